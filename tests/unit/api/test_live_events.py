"""The SSE streams' pure parts: when a call's stream ends, who gets which event, and what a
follower that cannot keep up gets (no broker: the hub's delivery is fed directly)."""

from __future__ import annotations

import asyncio

from events import new_envelope
from services.api.live_events import EventHub, call_stream_done


def seen(*types: str, **data: dict) -> dict[str, dict]:
    return {t: data.get(t.replace(".", "_"), {}) for t in types}


def test_a_call_stream_ends_with_the_call_when_nothing_was_recorded():
    assert not call_stream_done(seen("call.queued", "call.answered"))
    assert call_stream_done(seen("call.queued", "call.completed"))
    assert call_stream_done(seen("call.rejected"))
    assert call_stream_done(seen("call.no-answer"))


def test_a_recorded_call_ends_once_its_recording_and_asked_transcript_are_in():
    base = ("call.answered", "recording.captured", "call.completed")
    assert not call_stream_done(seen(*base))
    assert call_stream_done(seen(*base, "recording.completed"))
    assert call_stream_done(seen(*base, "recording.failed"))
    transcribed = {"recording_completed": {"transcribe": True}}
    assert not call_stream_done(seen(*base, "recording.completed", **transcribed))
    assert call_stream_done(seen(*base, "recording.completed", "transcription.completed", **transcribed))
    assert call_stream_done(seen(*base, "recording.completed", "transcription.failed", **transcribed))


def ev(call_id: str, account: str, type: str = "call.ringing"):
    return new_envelope(type, call_id, account, {})


async def test_events_reach_only_their_account_and_call():
    hub = EventHub()
    hub._ready = asyncio.Event()
    hub._ready.set()
    hub._task = asyncio.get_running_loop().create_future()  # a reader "running": none is started
    acct = await hub.follow("acct_a")
    call = await hub.follow("acct_a", "call_1")
    other = await hub.follow("acct_b")
    for e in (ev("call_1", "acct_a"), ev("call_2", "acct_a"), ev("call_1", "acct_b")):
        hub._deliver(e)
    assert [e.call_id for e in drain(acct)] == ["call_1", "call_2"]
    assert [(e.call_id, e.account_id) for e in drain(call)] == [("call_1", "acct_a")]
    assert [(e.call_id, e.account_id) for e in drain(other)] == [("call_1", "acct_b")]
    assert [e.call_id for e in hub.recent(call)] == ["call_1"]  # the recent window, for a resume
    hub._task.cancel()


async def test_a_follower_that_falls_behind_is_cut_off_and_never_blocks_the_others():
    hub = EventHub(queue_size=3)
    hub._ready = asyncio.Event()
    hub._ready.set()
    hub._task = asyncio.get_running_loop().create_future()
    slow, fast = await hub.follow("acct_a"), await hub.follow("acct_a")
    for i in range(5):
        hub._deliver(ev(f"call_{i}", "acct_a"))
        drain(fast)  # keeps up
    assert slow.overflowed and not fast.overflowed
    got = drain(slow)
    assert got[-1] is None  # the wake-up: the stream sends `gap` and the client resumes
    hub._task.cancel()


def test_the_recent_window_is_bounded():
    hub = EventHub(window_max=10)
    for i in range(25):
        hub._deliver(ev(f"call_{i}", "acct_a"))
    assert len(hub._recent) == 10


def drain(f) -> list:
    out = []
    while not f.queue.empty():
        out.append(f.queue.get_nowait())
    return out
