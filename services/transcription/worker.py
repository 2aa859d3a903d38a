"""Transcription worker: ``recording.completed`` (with ``transcribe: true``) ->
``transcription.completed`` | ``transcription.failed``.

Dual-channel recordings are transcribed per channel (left = callee, right =
agent) and merged with speaker labels. Transcripts are cached in the media
store under the recording's WAV ref, so a redelivered event is not
re-transcribed.

Run: ``python -m services.transcription.worker`` (consumer group ``transcription``).
"""

from __future__ import annotations

import asyncio
import hashlib

import orjson

from events import Envelope
from services.common import audio
from services.common.config import settings
from services.common.logging import configure, get_logger
from services.common.media_store import MediaStore, get_media_store
from services.common.event_worker import EventWorker, failed, serve, with_retries

from .engine import Transcript, WhisperTranscriber, default_model_path, get_transcriber

GROUP = "transcription"
_MAX_TRACKED_CALLS = 100_000


class TranscriptionHandler:
    """Transcribes completed recordings of calls that asked for it."""

    types = frozenset({"call.queued", "recording.completed"})  # what the worker takes

    def __init__(self, store: MediaStore | None = None, transcriber: WhisperTranscriber | None = None) -> None:
        self.store = store or get_media_store()
        self.transcriber = transcriber or get_transcriber()
        self.transcribe_calls: dict[str, str | None] = {}  # call -> its transcribe_language
        self.log = get_logger(service=GROUP)
        s = settings().transcription  # read once, at start-up
        self.timeout_s, self.timeout_per_audio_s = s.timeout_s, s.timeout_per_audio_s

    def timeout_for(self, env: Envelope) -> float | None:
        """A transcription may take ``timeout_s`` plus ``timeout_per_audio_s`` per second of audio."""
        if env.type != "recording.completed":
            return None
        seconds = max(0, int(env.data.get("duration_ms") or 0)) / 1000
        return self.timeout_s + self.timeout_per_audio_s * seconds

    def on_timeout(self, env: Envelope, exc: Exception) -> list[Envelope]:
        """A transcription over its time limit is a ``transcription.failed`` on the log, not only a DLQ record."""
        if env.type != "recording.completed":
            return []
        return failed(env, "transcription.failed", {"recording_id": env.data.get("recording_id"),
                                                     "reason": f"timed out: {exc}"}, GROUP)

    def _cache_key(self, wav_ref: str, language: str | None) -> str:
        model = str(getattr(self.transcriber, "_model_path", None) or default_model_path())
        lang = "" if language is None else f"|{language}"  # English keys stay what they were
        return "stt-" + hashlib.sha256(f"{wav_ref}|{model}{lang}".encode()).hexdigest()

    def transcribe_ref(self, wav_ref: str, channels: str, language: str | None = None) -> Transcript | dict:
        """Blocking: transcribe a stored recording (cached by ref and language) in `language`
        (BCP-47, 'auto', None: English)."""
        key = self._cache_key(wav_ref, language)
        cached = self.store.get_alias(key)
        if cached:
            return orjson.loads(self.store.get(cached))
        left, right = audio.load_channels(self.store.get(wav_ref))
        if channels == "dual" and right is not None:
            t = self.transcriber.transcribe_dual(left, right, language)
        else:
            t = self.transcriber.transcribe(left, language)
        result = t.to_dict()
        self.store.set_alias(key, self.store.put(orjson.dumps(result), "json"))
        return result

    async def __call__(self, env: Envelope) -> list[Envelope]:
        if env.type == "call.queued":
            if env.data.get("transcribe"):
                if len(self.transcribe_calls) >= _MAX_TRACKED_CALLS:
                    self.transcribe_calls.pop(next(iter(self.transcribe_calls)))
                self.transcribe_calls[env.call_id] = env.data.get("transcribe_language")  # in: wanted
            return []
        if env.type != "recording.completed":
            return []
        asked = env.call_id in self.transcribe_calls
        language = self.transcribe_calls.pop(env.call_id, None)
        if not (env.data.get("transcribe") or asked):
            return []
        language = env.data.get("language") or language  # the recording's own, when it says
        try:  # a transient failure (the store unreachable) is retried with backoff first
            result = await with_retries(lambda: audio.run_blocking(self.transcribe_ref, env.data["wav_ref"],
                                                                   env.data.get("channels", "mono"), language),
                                        what="transcription", log=self.log)
        except Exception as exc:
            return failed(env, "transcription.failed", {"recording_id": env.data.get("recording_id"),
                                                         "reason": f"{type(exc).__name__}: {exc}"}, GROUP)
        return [env.caused("transcription.completed", {"recording_id": env.data.get("recording_id"), **result})]


async def main() -> None:
    log = configure(GROUP)
    await serve(EventWorker(GROUP, TranscriptionHandler(), log=log))


if __name__ == "__main__":
    asyncio.run(main())
