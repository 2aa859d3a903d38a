"""Speech helpers: endpoint an utterance by voice activity, then pick the closest hint.

The endpointer is a small energy VAD on 20 ms frames: speech starts after a few loud
frames in a row and ends after enough quiet; times are counted in frames (call time),
so an accelerated sandbox call endpoints exactly like a real-time one. Used by the
gateway's speech gather and by the live transcription worker; recognising the words
is up to them.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

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
