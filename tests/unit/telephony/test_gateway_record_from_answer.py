"""A recorded call records from the instant of answer, not a Kafka round trip later.

The call's ``record`` option rides on ``dial.requested``: the gateway starts the recording
(and the transcription stream) when the carrier reports the answer, so what the callee
says at once is kept, and every offset counts from answer whatever the machine's speed.
"""

from __future__ import annotations

import asyncio

from events import new_envelope
from services.common.audio import tone
from services.telephony.carrier import Answered
from services.telephony.gateway import LiveCall
from tests.unit.telephony.test_gateway_speech import FakeGateway, FakeSession


class RecordingSession(FakeSession):
    def __init__(self):
        super().__init__()
        self.rec = None  # the gateway's recorder, while recording

    def speak(self, pcm: bytes):
        if self.rec is not None:
            self.rec.write(pcm, b"\x00" * len(pcm))
        super().speak(pcm)

    def start_recording(self, recorder=None):
        if self.rec is None:
            self.rec = recorder

    def stop_recording(self):
        self.rec = None
        return b"", b""


def _recorded_dial(**record):
    return new_envelope("dial.requested", "call_r", "acct_1", {
        "to": "+15551234567", "from": "+15559876543", "record": {"channels": "dual", "transcribe": True, **record}})


async def _answered(session, dial):
    gw = FakeGateway()
    call = LiveCall(gw, dial, session)
    session.events.put_nowait(Answered())
    for _ in range(100):
        if any(e.type == "call.answered" for e in gw.producer.events):
            break
        await asyncio.sleep(0.01)
    return gw, call


async def test_the_callee_speaking_right_after_answer_is_recorded_and_streamed_from_offset_zero(tmp_path, monkeypatch):
    monkeypatch.setenv("CANARY_MEDIA_DIR", str(tmp_path))
    session = RecordingSession()
    dial = _recorded_dial()
    gw, call = await _answered(session, dial)
    try:
        said = tone(440, 400)  # said before record.requested could come back from the orchestrator
        session.speak(said)
        await call._instruction(dial.caused("record.requested", {"channels": "dual", "transcribe": True},
                                            step="record"))  # late: joins the recording already running
        await session.hangup()
        for _ in range(200):
            if any(e.type == "call.completed" for e in gw.producer.events):
                break
            await asyncio.sleep(0.01)
        captured = next(e for e in gw.producer.events if e.type == "recording.captured")
        assert captured.data["duration_ms"] == 400 and captured.data["channels"] == "dual"
        assert captured.causation_id == dial.id  # the recording the dial started, not a second one
        offsets = [int(h["offset_ms"]) for _, h in gw.producer.audio]
        assert offsets and offsets[0] == 0, offsets
        assert {h["purpose"] for _, h in gw.producer.audio} == {b"transcribe"}
    finally:
        call.close()


async def test_a_call_without_the_record_option_records_nothing_until_asked():
    session = RecordingSession()
    dial = new_envelope("dial.requested", "call_r", "acct_1", {"to": "+15551234567", "from": "+15559876543"})
    gw, call = await _answered(session, dial)
    try:
        session.speak(tone(440, 200))
        assert session.rec is None and gw.producer.audio == []
    finally:
        call.close()
