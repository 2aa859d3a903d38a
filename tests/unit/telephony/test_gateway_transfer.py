"""A transfer instruction on the gateway for a call whose carrier cannot transfer (a sandbox
session: the orchestrator bridges sandbox transfers as a second call instead, so only a replayed
old instruction gets here): it fails at once, on the call's timeline, and the call stays up.
A SIP call's REFER is tested in tests/unit/sip/test_refer.py and tests/e2e/test_sip_transfer.py."""

from __future__ import annotations

import asyncio

from services.telephony.carrier import DialRequest
from services.telephony.gateway import LiveCall
from services.telephony.sandbox import FrameClock, SandboxSession
from tests.unit.telephony.test_gateway_speech import FakeGateway, _dial

SPEED = 20.0


async def test_a_carrier_without_transfer_fails_it_at_once_and_the_call_stays_up():
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
        await call._instruction(dial.caused("transfer.requested", {"to": "+15557770010", "step": "agent",
                                                                   "tag": "agent#1"}))
        await asyncio.sleep(0.2)
        evs = [e for e in gw.producer.events if e.type.startswith(("transfer.", "call.completed"))]
        assert [e.type for e in evs] == ["transfer.failed"]
        assert evs[0].data == {"to": "+15557770010", "code": None, "reason": "this carrier cannot transfer calls",
                               "step": "agent", "tag": "agent#1"}
        assert not call.ended
    finally:
        call.close()
