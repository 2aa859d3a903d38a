"""What an app sent to be played into the call, waiting its turn: pure, no clock.

The app's audio is cut into 20 ms frames and queued with its marks in arrival order.
The call's carrier plays it at real time (``session.play`` returns once the frames have
gone out), so pacing is the carrier's clock; this queue only says what comes next:

- ``take()`` gives either the audio up to the next mark (at most ``batch`` frames) or a
  mark whose audio has been taken, so a mark is echoed only after its audio played;
- the queue is bounded (``max_frames``): an app that sends faster than real time for
  longer than that loses its *oldest* frames (counted in ``shed``), never the call;
- ``clear()`` (barge-in) drops every queued frame at once and returns the marks it
  dropped, which Twilio echoes back too, so an app waiting for them is not left hanging.
"""

from __future__ import annotations

from collections import deque

from services.telephony.carrier import FRAME_BYTES


class Playout:
    def __init__(self, max_frames: int = 500, batch: int = 50):
        self.max_frames, self.batch = max_frames, batch
        self._items: deque[bytes | str] = deque()  # bytes: one 20 ms frame; str: a mark's name
        self._partial = b""  # the tail of the app's audio short of a whole frame
        self.frames = 0  # audio frames queued now
        self.shed = 0  # frames dropped because the queue was full (the app sent too far ahead)
        self.cleared = 0  # frames dropped by clear()

    def __len__(self) -> int:
        return len(self._items) + (1 if self._partial else 0)

    def add_audio(self, pcm: bytes) -> int:
        """Queue audio; returns how many old frames had to be shed to make room."""
        data = self._partial + pcm
        whole = len(data) - len(data) % FRAME_BYTES
        self._partial = data[whole:]
        for i in range(0, whole, FRAME_BYTES):
            self._items.append(data[i:i + FRAME_BYTES])
            self.frames += 1
        return self._shed()

    def _shed(self) -> int:
        dropped = 0
        while self.frames > self.max_frames:
            for i, item in enumerate(self._items):  # the oldest frame (marks keep their place)
                if type(item) is bytes:
                    del self._items[i]
                    break
            self.frames -= 1
            dropped += 1
        self.shed += dropped
        return dropped

    def add_mark(self, name: str) -> None:
        """A mark after the audio queued so far (its partial frame padded: the mark says it ends here)."""
        self._flush_partial()
        self._items.append(name)

    def _flush_partial(self) -> None:
        if self._partial:
            self._items.append(self._partial + bytes(FRAME_BYTES - len(self._partial)))
            self._partial = b""
            self.frames += 1
            self._shed()

    def clear(self) -> list[str]:
        """Drop everything queued; the marks that were waiting, in order."""
        marks = [i for i in self._items if type(i) is str]
        self.cleared += self.frames + (1 if self._partial else 0)
        self._items.clear()
        self._partial = b""
        self.frames = 0
        return marks

    def take(self) -> bytes | str | None:
        """The next thing to do: audio to play (bytes, whole frames), a mark to echo (str), or None."""
        if not self._items:
            self._flush_partial()  # the app paused mid-frame: play what it sent
        if not self._items:
            return None
        if type(self._items[0]) is str:
            return self._items.popleft()
        out = []
        while self._items and type(self._items[0]) is bytes and len(out) < self.batch:
            out.append(self._items.popleft())
        self.frames -= len(out)
        return b"".join(out)
