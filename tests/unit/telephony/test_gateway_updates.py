"""The gateway's side of call updates: an interrupt stops the prompt and the gather and drops
what was queued before it; recording controls and digits do not wait behind a prompt; the
pause is silence with its span; a time-limit hangup reports its reason."""

from __future__ import annotations

import asyncio

from services.common.media_store_spool import MemoryRecorder, PausableRecorder
from services.telephony.carrier import Ended
from services.telephony.gateway import Gateway, LiveCall
from tests.unit.telephony.test_gateway_hangup import PlayingSession
from tests.unit.telephony.test_gateway_speech import FakeGateway, _dial

FRAME = b"\x10\x00" * 160


class Session(PlayingSession):
    """Plays for an hour unless stopped; records what it is given; notes digits sent."""

    def __init__(self):
        super().__init__()
        self.plays: list[bytes] = []
        self.digits: list[str] = []
        self.recorder = None

    async def play(self, pcm: bytes) -> bool:
        self.plays.append(pcm)
        self.stopped.clear()
        return await super().play(pcm)

    async def send_dtmf(self, digits: str) -> None:
        self.digits.append(digits)

    def start_recording(self, recorder=None):
        self.recorder = recorder

    def stop_recording(self):
        return b"", b""


async def _call(session):
    fake = FakeGateway()
    dial = _dial()
    call = LiveCall(fake, dial, session)

    async def audio(ref):
        return ref.encode()

    fake.load_audio = audio
    gw = Gateway(carriers={})
    gw.calls[call.dial.call_id] = call
    return fake, dial, call, gw


async def test_an_interrupt_stops_the_prompt_ends_the_gather_and_drops_what_was_queued():
    session = Session()
    fake, dial, call, gw = await _call(session)
    try:
        await gw.dispatch(dial.caused("play.requested", {"audio_ref": "old1"}, step="p1"))
        await gw.dispatch(dial.caused("play.requested", {"audio_ref": "old2"}, step="p2"))  # queued behind it
        await gw.dispatch(dial.caused("gather.requested", {"num_digits": 4, "timeout": 30}, step="g"))
        await asyncio.sleep(0.05)
        await gw.dispatch(dial.caused("interrupt.requested", {"reason": "update"}, step="i"))
        await gw.dispatch(dial.caused("play.requested", {"audio_ref": "new", "step": "update:u"}, step="p3"))
        for _ in range(100):
            if len(session.plays) == 2:
                break
            await asyncio.sleep(0.01)
        assert session.plays == [b"old1", b"new"]  # old2 and the old gather were dropped
        assert call.collector is None
        finished = [(e.data["step"], e.data["interrupted"]) for e in fake.producer.events
                    if e.type == "prompt.finished"]
        assert finished == [(None, True)]  # the old prompt, cut; the new one still plays
        assert not [e for e in fake.producer.events if e.type.startswith("gather.")]  # ended silently
    finally:
        call.close()


async def test_digits_and_recording_controls_do_not_wait_behind_the_prompt():
    session = Session()
    fake, dial, call, gw = await _call(session)
    try:
        await gw.dispatch(dial.caused("play.requested", {"audio_ref": "long"}, step="p"))
        await asyncio.sleep(0.02)
        await gw.dispatch(dial.caused("dtmf.send.requested", {"digits": "12"}, step="d"))
        for _ in range(100):
            if any(e.type == "dtmf.sent" for e in fake.producer.events):
                break
            await asyncio.sleep(0.01)
        assert session.digits == ["12"] and not session.stopped.is_set()  # the prompt plays on
        sent = next(e for e in fake.producer.events if e.type == "dtmf.sent")
        assert sent.data == {"digits": "12", "method": "rfc4733"}
    finally:
        call.close()


async def test_pause_resume_write_silence_and_report_offsets():
    session = Session()
    fake, dial, call, gw = await _call(session)
    inner = MemoryRecorder()
    call.recording, call.recorder = dial, PausableRecorder(inner)
    try:
        call.recorder.write(FRAME, FRAME)
        await call._instruction(dial.caused("record.control.requested", {"action": "pause"}, step="a"))
        call.recorder.write(FRAME, FRAME)
        await call._instruction(dial.caused("record.control.requested", {"action": "pause"}, step="b"))  # no-op
        await call._instruction(dial.caused("record.control.requested", {"action": "resume"}, step="c"))
        call.recorder.write(FRAME, FRAME)
        evs = [(e.type, e.data) for e in fake.producer.events]
        assert evs == [("recording.paused", {"offset_ms": 20}), ("recording.resumed", {"offset_ms": 40})]
        callee, ours = inner.audio()
        assert ours == FRAME + bytes(320) + FRAME and callee == ours
        assert call.recorder.paused_spans() == [{"start_ms": 20, "end_ms": 40}]
    finally:
        call.recorder = None  # a memory recorder has no spool files to drop
        call.close()


async def test_a_control_for_a_call_not_recorded_does_nothing():
    session = Session()
    fake, dial, call, gw = await _call(session)
    try:
        await call._instruction(dial.caused("record.control.requested", {"action": "pause"}, step="a"))
        assert fake.producer.events == []
    finally:
        call.close()


async def test_a_time_limit_hangup_reports_its_reason():
    session = Session()
    fake, dial, call, gw = await _call(session)
    try:
        await gw.dispatch(dial.caused("hangup.requested", {"reason": "time_limit", "status": "completed",
                                                           "end_reason": "time_limit"}, step="h"))
        for _ in range(100):
            if any(e.type == "call.completed" for e in fake.producer.events):
                break
            await asyncio.sleep(0.01)
        end = next(e for e in fake.producer.events if e.type == "call.completed")
        assert end.data["reason"] == "time_limit" and end.data["hangup_by"] == "caller"
    finally:
        call.close()


async def test_the_far_ends_hangup_keeps_its_own_reason():
    session = Session()
    fake, dial, call, gw = await _call(session)
    call.end_reason = "time_limit"  # asked for, but the callee hung up first
    try:
        session.events.put_nowait(Ended("completed", "callee hung up", hangup_by="callee"))
        for _ in range(100):
            if any(e.type == "call.completed" for e in fake.producer.events):
                break
            await asyncio.sleep(0.01)
        assert next(e for e in fake.producer.events if e.type == "call.completed").data["reason"] == "callee hung up"
    finally:
        call.close()
