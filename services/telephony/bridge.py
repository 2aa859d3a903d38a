"""Connecting two calls on one gateway (a flow's dial step): ringback, then audio both ways.

Both legs are carrier sessions of this gateway. While the second call rings, the first hears
a generated ringback tone; once it answers, each leg's received frames go into a `Relay` that
the other leg's session sends from (`CallSession.set_feed`: the carrier asks it for a frame
whenever no prompt or digit is being sent, on its own 20 ms clock). Nothing here blocks: a
frame callback appends to a bounded deque, a feed pops from it.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np

from services.telephony.carrier import FRAME_BYTES, SAMPLE_RATE

# North American ringback (ITU-T E.180): 440 + 480 Hz, 2 s on, 4 s off.
RINGBACK_HZ = (440.0, 480.0)
RINGBACK_ON_MS, RINGBACK_OFF_MS = 2000, 4000
RINGBACK_LEVEL = 0.1  # of full scale, per tone
# At most this many frames wait between the legs (1 s): a leg whose clock runs ahead of the
# other's drops the oldest rather than letting the delay grow. (The delay in step is a frame or
# two; the bound covers the second call's first words, collected from its answer until the
# gateway connects the two, and an accelerated sandbox's bursts.)
RELAY_FRAMES = 50
# A backlog deeper than this (60 ms) is standing delay the listener hears for the rest of the
# call (bench/bridge.py measured the second party 150 ms behind, the frames kept from its answer
# to the connect): it is shed in the next pause, one quiet frame at a time, never from speech.
TARGET_FRAMES = 3
QUIET_LEVEL = 100  # mean |sample| of a frame below this is a pause (speech: hundreds to thousands)

Feed = Callable[[], "bytes | None"]


def ringback_cycle() -> list[bytes]:
    """One on/off cycle of ringback as 20 ms frames of 8 kHz s16le."""
    on = RINGBACK_ON_MS * SAMPLE_RATE // 1000
    t = np.arange(on) / SAMPLE_RATE
    wave = sum(np.sin(2 * np.pi * hz * t) for hz in RINGBACK_HZ) * RINGBACK_LEVEL * 32767
    pcm = wave.astype("<i2").tobytes() + bytes(RINGBACK_OFF_MS * SAMPLE_RATE // 1000 * 2)
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


_CYCLE: list[bytes] | None = None
# Music on hold, generated (no file to ship or fetch): a slow C-major arpeggio, soft.
HOLD_NOTES_HZ = (261.63, 329.63, 392.0, 523.25, 392.0, 329.63)
HOLD_NOTE_MS = 400
HOLD_LEVEL = 0.08
_HOLD: list[bytes] | None = None


def hold_music_cycle() -> list[bytes]:
    """One loop of the hold music as 20 ms frames of 8 kHz s16le (each note fades in and out)."""
    n = HOLD_NOTE_MS * SAMPLE_RATE // 1000
    t = np.arange(n) / SAMPLE_RATE
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.05)  # 50 ms fades: no clicks between notes
    pcm = b"".join((np.sin(2 * np.pi * hz * t) * envelope * HOLD_LEVEL * 32767).astype("<i2").tobytes()
                   for hz in HOLD_NOTES_HZ)
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


def hold_music() -> Feed:
    """A feed that plays the hold music, looping."""
    global _HOLD
    if _HOLD is None:
        _HOLD = hold_music_cycle()
    return _loop(_HOLD)


def _loop(frames: list[bytes]) -> Feed:
    n = [0]

    def feed() -> bytes:
        frame = frames[n[0] % len(frames)]
        n[0] += 1
        return frame

    return feed


def ringback() -> Feed:
    """A feed that plays ringback from the start of its cycle, forever."""
    global _CYCLE
    if _CYCLE is None:
        _CYCLE = ringback_cycle()
    return _loop(_CYCLE)


def quiet(frame: bytes) -> bool:
    """A frame of a pause (low mean level), which can be left out without losing words."""
    samples = np.frombuffer(frame, "<i2")
    return not samples.size or float(np.abs(samples.astype(np.int32)).mean()) < QUIET_LEVEL


class Relay:
    """Frames from one leg waiting to be sent to the other (bounded: the oldest go first; a
    backlog over `target` frames is shed in pauses)."""

    __slots__ = ("frames", "relayed", "dropped", "shed", "target")

    def __init__(self, max_frames: int = RELAY_FRAMES, target: int = TARGET_FRAMES):
        self.frames: deque[bytes] = deque(maxlen=max_frames)
        self.relayed = 0
        self.dropped = 0
        self.shed = 0
        self.target = target

    def push(self, frame: bytes) -> None:
        if len(self.frames) == self.frames.maxlen:
            self.dropped += 1
        self.frames.append(frame)

    def pull(self) -> bytes | None:
        while len(self.frames) > self.target and quiet(self.frames[0]):
            self.frames.popleft()
            self.shed += 1
        if not self.frames:
            return None
        self.relayed += 1
        return self.frames.popleft()
