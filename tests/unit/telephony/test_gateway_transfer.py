"""A transfer step's instruction on the gateway, with a real sandbox session as the call: the
transfer's events in order on the call's timeline, and the call's end when it succeeds."""

from __future__ import annotations

import asyncio

import pytest

from services.lib.trunks import BUSY
from services.telephony.carrier import DialRequest
from services.telephony.gateway import LiveCall
from services.telephony.sandbox import FrameClock, SandboxSession
from tests.unit.telephony.test_gateway_speech import FakeGateway, _dial

SPEED = 20.0


async def transfer(to: str) -> list:
    gw = FakeGateway()
    session = SandboxSession(DialRequest("call_s", "+15551234567", "+15559876543", 30.0), None, SPEED, None,
                             FrameClock(SPEED))
    dial = _dial()
    call = LiveCall(gw, dial, session)
    try:
        for _ in range(200):
            if any(e.type == "call.answered" for e in gw.producer.events):
                break
            await asyncio.sleep(0.01)
        await call._instruction(dial.caused("transfer.requested", {"to": to, "step": "agent", "tag": "agent#1"}))
        for _ in range(300):
            if any(e.type in ("transfer.completed", "transfer.failed") for e in gw.producer.events):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        return [e for e in gw.producer.events if e.type.startswith(("transfer.", "call.completed"))]
    finally:
        call.close()


async def test_a_sandbox_transfer_reports_like_a_refer_and_ends_the_call():
    evs = await transfer("+15557770010")
    assert [e.type for e in evs] == ["transfer.started", "transfer.progressed", "transfer.progressed",
                                     "transfer.progressed", "transfer.completed", "call.completed"]
    assert evs[0].data == {"to": "+15557770010", "refer_to": "tel:+15557770010", "step": "agent", "tag": "agent#1"}
    assert [e.data["code"] for e in evs[1:5]] == [202, 100, 180, 200]
    assert evs[-1].data["reason"] == "transferred to tel:+15557770010" and evs[-1].data["hangup_by"] == "system"
    assert all(e.causation_id == evs[0].causation_id for e in evs[:5])  # all caused by the transfer.requested


async def test_a_busy_target_fails_the_transfer_and_the_call_stays_up():
    evs = await transfer(BUSY)
    assert [e.type for e in evs][-1] == "transfer.failed"
    assert evs[-1].data == {"to": BUSY, "code": 486, "reason": "Busy Here", "step": "agent", "tag": "agent#1"}
    assert "call.completed" not in [e.type for e in evs]


@pytest.mark.parametrize("to", ["5557770010", "http://x"])
async def test_a_bad_target_fails_at_once(to):
    evs = await transfer(to)
    assert [e.type for e in evs] == ["transfer.failed"] and evs[0].data["code"] is None
