"""What an app sent to be played into the call, waiting its turn: pure, no clock.

The app's audio is cut into 20 ms frames and queued with its marks in arrival order.
The call's carrier takes it a frame per tick of its own clock (the session's feed), so
pacing is the carrier's; this queue only says what comes next:

- ``take_frame()`` gives the next frame, or a mark whose audio has all been taken, so a
  mark is echoed only once its audio went out;
- the queue is bounded (``max_frames``): an app that sends faster than real time for
  longer than that loses its *oldest* frames (counted in ``shed``), never the call;
- ``clear()`` (barge-in) drops every queued frame at once and returns the marks it
  dropped, which Twilio echoes back too, so an app waiting for them is not left hanging.
"""

from __future__ import annotations

from collections import deque

from services.telephony.carrier import FRAME_BYTES


class Playout:
    def __init__(self, max_frames: int = 500):
        self.max_frames = max_frames
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

    def take_frame(self) -> bytes | str | None:
        """The next thing to send: one 20 ms frame (bytes), a mark whose audio has all been taken
        (str), or None when nothing waits."""
        if not self._items:
            self._flush_partial()  # the app paused mid-frame: play what it sent
        if not self._items:
            return None
        item = self._items.popleft()
        if type(item) is bytes:
            self.frames -= 1
        return item
