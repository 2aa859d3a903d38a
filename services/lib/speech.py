"""Speech helpers: endpoint an utterance by voice activity, then pick the closest hint.

Two endpointers with one interface (``feed(frame) -> 'started' | 'ended' | None``, on
20 ms frames, times counted in frames, i.e. call time, so an accelerated sandbox call
endpoints exactly like a real-time one):

- ``SileroEndpointer``: the trained Silero VAD (its ONNX model from the ``silero-vad``
  package, run with onnxruntime: no torch), ~0.2 ms of CPU per 32 ms of audio. It tells
  speech from loud noise and holds through the short pauses inside a sentence, so it
  ends utterances less often too early (bench/languages.py measures both). Used where
  the words are recognised: speech gathers and live transcription (the transcription
  service's processes).
- ``Endpointer``: an energy threshold, nearly free. The gateway keeps it: there it only
  holds the gather's first-input timer while the caller makes sound, on the call's event
  loop, where a model per call per frame would cost the loop.

Recognising the words is up to the callers.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from services.common.audio import rms_dbfs

FRAME_MS = 20


@dataclass(slots=True)
class Endpointer:
    threshold_db: float = -42.0
    start_frames: int = 3  # 60 ms of sound before we call it speech
    end_silence_ms: int = 800
    max_ms: int = 15_000
    preroll_frames: int = 10  # keep the quiet lead-in so the first phoneme is not cut
    frames: list[bytes] = field(default_factory=list)
    started: bool = False
    ended: bool = False
    _loud_run: int = 0
    _quiet_run: int = 0
    _pre: list[bytes] = field(default_factory=list)

    def feed(self, frame: bytes) -> str | None:
        """Feed one frame; returns 'started' or 'ended' when that happens, else None."""
        if self.ended:
            return None
        loud = rms_dbfs(frame) > self.threshold_db
        if not self.started:
            self._pre = (self._pre + [frame])[-self.preroll_frames:]
            self._loud_run = self._loud_run + 1 if loud else 0
            if self._loud_run >= self.start_frames:
                self.started, self.frames = True, list(self._pre)
                return "started"
            return None
        self.frames.append(frame)
        self._quiet_run = 0 if loud else self._quiet_run + 1
        if self._quiet_run * FRAME_MS >= self.end_silence_ms or len(self.frames) * FRAME_MS >= self.max_ms:
            self.ended = True
            return "ended"
        return None

    def audio(self) -> bytes:
        return b"".join(self.frames)


_SILERO_RATE = 8000
_SILERO_CHUNK = 256  # samples the model takes at 8 kHz (32 ms)
_SILERO_CONTEXT = 32  # samples of the previous chunk it is given in front of each one
_silero_session = None


def _silero():
    """The process's Silero VAD session (one thread: many small runs, not one big one)."""
    global _silero_session
    if _silero_session is None:
        import importlib.util
        from pathlib import Path

        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = opts.intra_op_num_threads = 1
        # Located, not imported: the package's Python code needs torch, its ONNX model does not.
        spec = importlib.util.find_spec("silero_vad")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("the silero-vad package is not installed (make install)")
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"
        _silero_session = onnxruntime.InferenceSession(str(path), sess_options=opts,
                                                       providers=["CPUExecutionProvider"])
    return _silero_session


@dataclass(slots=True)
class SileroEndpointer:
    """The utterance endpointer on the Silero VAD: speech starts once the model's speech
    probability holds above `start_prob` for `start_ms`, and ends after `end_silence_ms`
    below `end_prob` (hysteresis: a syllable's dip does not end it)."""

    start_prob: float = 0.5
    end_prob: float = 0.35
    start_ms: int = 64
    end_silence_ms: int = 800
    max_ms: int = 15_000
    preroll_frames: int = 10
    frames: list[bytes] = field(default_factory=list)
    started: bool = False
    ended: bool = False
    _pending: bytes = b""
    _context: Any = None
    _state: Any = None
    _prob: float = 0.0
    _speech_ms: int = 0
    _quiet_ms: int = 0
    _pre: list[bytes] = field(default_factory=list)

    def _probability(self, frame: bytes) -> float:
        """Speech probability of the latest 32 ms (updated whenever a whole chunk is in)."""
        import numpy as np

        self._pending += frame
        need = _SILERO_CHUNK * 2
        while len(self._pending) >= need:
            chunk, self._pending = self._pending[:need], self._pending[need:]
            x = np.frombuffer(chunk, dtype="<i2").astype(np.float32) / 32768.0
            if self._state is None:
                self._state = np.zeros((2, 1, 128), dtype=np.float32)
                self._context = np.zeros(_SILERO_CONTEXT, dtype=np.float32)
            inp = np.concatenate([self._context, x])[None, :]
            out, self._state = _silero().run(None, {"input": inp, "state": self._state,
                                                     "sr": np.array(_SILERO_RATE, dtype=np.int64)})
            self._context = inp[0, -_SILERO_CONTEXT:]
            self._prob = float(out[0][0])
        return self._prob

    def feed(self, frame: bytes) -> str | None:
        """Feed one 20 ms frame; returns 'started' or 'ended' when that happens, else None."""
        if self.ended:
            return None
        p = self._probability(frame)
        if not self.started:
            self._pre = (self._pre + [frame])[-self.preroll_frames:]
            self._speech_ms = self._speech_ms + FRAME_MS if p >= self.start_prob else 0
            if self._speech_ms >= self.start_ms:
                self.started, self.frames = True, list(self._pre)
                return "started"
            return None
        self.frames.append(frame)
        self._quiet_ms = self._quiet_ms + FRAME_MS if p < self.end_prob else 0
        if self._quiet_ms >= self.end_silence_ms or len(self.frames) * FRAME_MS >= self.max_ms:
            self.ended = True
            return "ended"
        return None

    def audio(self) -> bytes:
        return b"".join(self.frames)


def make_endpointer(kind: str, *, end_silence_ms: int = 800, max_ms: int = 15_000,
                    threshold_db: float = -42.0) -> "Endpointer | SileroEndpointer":
    """The endpointer named by CANARY_VAD (`silero`, the default, or `energy`)."""
    if kind == "energy":
        return Endpointer(threshold_db=threshold_db, end_silence_ms=end_silence_ms, max_ms=max_ms)
    return SileroEndpointer(end_silence_ms=end_silence_ms, max_ms=max_ms)


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[\w']+", text.lower()))


def best_hint(text: str, hints: list[str] | None, cutoff: float = 0.6) -> str | None:
    """The expected phrase closest to what was heard (whole text or any word run), if close enough."""
    if not hints or not text:
        return None
    heard = _norm(text)
    words = heard.split()
    best, score = None, cutoff
    for hint in hints:
        h = _norm(hint)
        n = max(1, len(h.split()))
        candidates = [heard] + [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
        s = max(difflib.SequenceMatcher(None, h, c).ratio() for c in candidates)
        if s > score:
            best, score = hint, s
    return best
