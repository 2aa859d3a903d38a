"""The app's audio queue: framing, marks after their audio, bounded shedding, clear."""

from __future__ import annotations

from services.telephony.carrier import FRAME_BYTES
from services.telephony.streams.playout import Playout


def frames(n: int, fill: int = 1) -> bytes:
    return bytes([fill]) * (FRAME_BYTES * n)


def test_audio_then_mark_comes_out_in_order():
    q = Playout()
    q.add_audio(frames(3))
    q.add_mark("a")
    q.add_audio(frames(2))
    assert [q.take_frame() for _ in range(3)] == [frames(1)] * 3  # the audio before the mark, frame by frame
    assert q.take_frame() == "a"  # the mark only once its audio was taken (sent)
    assert [q.take_frame() for _ in range(2)] == [frames(1)] * 2
    assert q.take_frame() is None and q.frames == 0


def test_partial_frames_are_joined_across_messages():
    q = Playout()
    q.add_audio(bytes(100))
    q.add_audio(bytes(FRAME_BYTES - 100 + 10))
    assert q.frames == 1
    assert q.take_frame() == bytes(FRAME_BYTES)
    # What is left (10 bytes) is played, padded, when nothing else is queued: the app paused.
    assert q.take_frame() == bytes(FRAME_BYTES)
    assert q.take_frame() is None


def test_a_mark_ends_a_partial_frame():
    q = Playout()
    q.add_audio(bytes(10))
    q.add_mark("end")
    assert q.take_frame() == bytes(FRAME_BYTES)
    assert q.take_frame() == "end"


def test_full_queue_sheds_the_oldest_frames_but_keeps_marks():
    q = Playout(max_frames=5)
    q.add_audio(frames(3, fill=1))
    q.add_mark("m")
    shed = q.add_audio(frames(4, fill=2))  # an app sending far ahead of real time
    assert shed == 2 and q.shed == 2 and q.frames == 5
    assert q.take_frame() == frames(1, fill=1)  # the two oldest went
    assert q.take_frame() == "m"
    assert [q.take_frame() for _ in range(4)] == [frames(1, fill=2)] * 4


def test_clear_drops_everything_and_returns_waiting_marks():
    q = Playout()
    q.add_audio(frames(5))
    q.add_mark("m1")
    q.add_audio(frames(5) + bytes(7))
    q.add_mark("m2")
    assert q.clear() == ["m1", "m2"]  # echoed back to the app, as Twilio does on clear
    assert q.take_frame() is None and q.frames == 0 and len(q) == 0
    assert q.cleared == 11
