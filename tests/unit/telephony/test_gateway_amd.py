"""The gateway runs machine detection on the callee's frames from answer (no broker, fake carrier)."""

from __future__ import annotations

import asyncio

import numpy as np

from events import new_envelope
from services.common.audio import tone
from services.telephony.carrier import Answered
from services.telephony.gateway import LiveCall
from tests.unit.telephony.test_gateway_speech import FakeGateway, FakeSession


def _dial(**md):
    data = {"to": "+15551234567", "from": "+15559876543"}
    if md:
        data["machine_detection"] = md
    return new_envelope("dial.requested", "call_a", "acct_1", data)


async def _answered(dial):
    gw, session = FakeGateway(), FakeSession()
    call = LiveCall(gw, dial, session)
    session.events.put_nowait(Answered())
    for _ in range(100):
        if any(e.type == "call.answered" for e in gw.producer.events):
            break
        await asyncio.sleep(0.01)
    return gw, session, call


def _greeting(ms: int) -> bytes:
    rng = np.random.default_rng(3)
    n = ms * 8
    x = rng.standard_normal(n) * 0.2 * np.abs(np.sin(np.arange(n) / 8000 * np.pi * 4))  # syllable-ish
    return (x * 32767).astype("<i2").tobytes()


async def _events(gw, type: str, timeout: float = 2.0):
    for _ in range(int(timeout / 0.01)):
        found = [e for e in gw.producer.events if e.type == type]
        if found:
            return found
        await asyncio.sleep(0.01)
    return []


async def test_answered_by_is_null_at_answer_and_the_result_follows():
    gw, session, call = await _answered(_dial(mode="detect_message_end", timeout=30))
    try:
        answered = [e for e in gw.producer.events if e.type == "call.answered"][0]
        assert answered.data == {"answered_by": None}
        session.speak(bytes(320 * 10) + _greeting(4000) + bytes(320 * 20) + tone(1000, 500) + bytes(320 * 50))
        [res] = await _events(gw, "machine_detection.completed")
        assert res.data["answered_by"] == "machine_end_beep" and res.data["mode"] == "detect_message_end"
        beep_start = 200 + 4000 + 400
        assert 0 < res.data["beep_ms"] - beep_start <= 300
        assert res.data["decision_ms"] >= beep_start + 500  # after the beep: a message left now is heard whole
        assert res.causation_id == call.dial.id
        # Decided once: more audio emits nothing more, and the detector is gone.
        session.speak(_greeting(3000))
        await asyncio.sleep(0.05)
        assert len([e for e in gw.producer.events if e.type == "machine_detection.completed"]) == 1
        assert call.detector is None
    finally:
        call.close()


async def test_a_call_without_machine_detection_runs_no_detector():
    gw, session, call = await _answered(_dial())
    try:
        assert call.detector is None
        session.speak(_greeting(4000) + bytes(320 * 300))
        await asyncio.sleep(0.05)
        assert not [e for e in gw.producer.events if e.type == "machine_detection.completed"]
        assert [e for e in gw.producer.events if e.type == "call.answered"][0].data == {"answered_by": None}
    finally:
        call.close()


async def test_silence_until_the_timeout_is_unknown():
    gw, session, call = await _answered(_dial(mode="enable", timeout=3))
    try:
        session.speak(bytes(320 * 200))  # 4 s of nothing; the call's timeout is 3 s (before the 5 s rule)
        [res] = await _events(gw, "machine_detection.completed")
        assert res.data["answered_by"] == "unknown" and res.data["decision_ms"] == 3000
    finally:
        call.close()
