"""send_digits on a SIP call, through the gateway, to SIPp: RFC 4733 events on the wire.

The gateway's `dtmf.send.requested` (what an UpdateCall's send_digits becomes) drives a real
SIP session against SIPp; the RTP listener (SIPp's media address) reads what arrived: one
telephone-event per digit (its end packet three times, RFC 4733 2.5.1.4), `w` a half-second
pause, and `dtmf.sent` with method rfc4733 on the timeline."""

from __future__ import annotations

import asyncio

import pytest

from events import new_envelope
from services.telephony.carrier import Answered
from services.telephony.gateway import DIGIT_PAUSE_S, Gateway, LiveCall
from services.telephony.sip.dtmf import EVENTS, parse_event
from tests.unit.telephony.test_gateway_speech import FakeGateway

from .test_sipp import dial, poll, until

pytestmark = pytest.mark.interop


async def test_send_digits_reach_the_far_end_as_rfc4733_events(carrier, sipp, rtp_listener):
    uas = sipp("uas_answer.xml", sets={"rtp_port": str(rtp_listener.port)})
    req = dial(trunk=uas.trunk)
    session = await carrier.dial(req)
    assert isinstance((await until(session, Answered))[-1], Answered)
    assert session.dtmf_method == "rfc4733"  # SIPp's SDP offers telephone-event
    fake = FakeGateway()
    dial_env = new_envelope("dial.requested", req.call_id, "acct_1", {"to": req.to, "from": req.from_})
    call = LiveCall(fake, dial_env, session)
    gw = Gateway(carriers={})
    gw.calls[req.call_id] = call
    try:
        await gw.dispatch(dial_env.caused("dtmf.send.requested", {"digits": "12w3#"}, step="digits"))
        await poll(lambda: any(e.type == "dtmf.sent" for e in fake.producer.events), timeout=15)
        sent = next(e for e in fake.producer.events if e.type == "dtmf.sent")
        assert sent.data == {"digits": "12w3#", "method": "rfc4733"}
        await asyncio.sleep(0.2)  # the last end packets' way to the listener

        events = [r for r in rtp_listener.packets if r.pkt.payload_type == 101]
        ends = [(r, parse_event(r.pkt.payload)) for r in events if parse_event(r.pkt.payload).end]
        assert [EVENTS[e.event] for _, e in ends] == ["1"] * 3 + ["2"] * 3 + ["3"] * 3 + ["#"] * 3
        assert all(e.duration == 800 for _, e in ends)  # 100 ms each, in 8 kHz timestamp units
        # One event per digit: its packets share the RTP timestamp of its start.
        assert len({r.pkt.timestamp for r in events}) == 4
        # `w`: half a second between the end of 2 and the start of 3 (kernel receive stamps).
        first_of = {EVENTS[parse_event(r.pkt.payload).event]: r for r in reversed(events)}
        last_end_of_2 = [r for r, e in ends if EVENTS[e.event] == "2"][-1]
        assert first_of["3"].at - last_end_of_2.at >= DIGIT_PAUSE_S - 0.05
        await session.hangup()
        await poll(lambda: any(e.type == "call.completed" for e in fake.producer.events), timeout=10)
    finally:
        call.close()
    assert uas.wait() == 0, uas.errors()
