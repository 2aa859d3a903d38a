"""Inbound calls without sockets: the SDP answer, the UAS core on a virtual clock, and the
routing decision of an INVITE (services/lib/inbound.py)."""

from __future__ import annotations

import pytest

from services.lib.inbound import (UNKNOWN_NUMBER, UNKNOWN_SOURCE, Accept, Directory, NumberRoute, RouteError,
                                  check_changes, dialed_number, route, voice_url_flow)
from services.lib.flows.validate import validate_flow
from services.telephony.carrier import Answered, DialRequest, Ended, Ringing
from services.telephony.sip.core import Finished, SetRemoteMedia, StartMedia
from services.telephony.sip.message import parse_message
from services.telephony.sip.sdp import PCMA, PCMU, SdpError, build_answer, parse_sdp
from services.telephony.sip.transaction import ArmTimer, Send, Timers
from services.telephony.sip.uas import TIMER_G, TIMER_H, InboundCore

CALLER = ("192.0.2.50", 5070)


def offer_sdp(fmts: str = "8 0 101", extra: str = "a=rtpmap:101 telephone-event/8000\r\n") -> str:
    return ("v=0\r\no=- 1 1 IN IP4 192.0.2.50\r\ns=-\r\nc=IN IP4 192.0.2.50\r\nt=0 0\r\n"
            f"m=audio 6000 RTP/AVP {fmts}\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n{extra}")


def invite(sdp: str | None = None, method: str = "INVITE", branch: str = "z9hG4bKcaller1") -> bytes:
    body = (offer_sdp() if sdp is None else sdp).encode()
    return (f"{method} sip:+15550001@192.0.2.1:5062 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.50:5070;branch={branch}\r\n"
            "From: <sip:+15551230001@192.0.2.50>;tag=caller\r\nTo: <sip:+15550001@192.0.2.1>\r\n"
            "Call-ID: in-1@192.0.2.50\r\nCSeq: 1 " + method + "\r\nContact: <sip:sipp@192.0.2.50:5070>\r\n"
            f"Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def request(method: str, cseq: int, branch: str, to_tag: str) -> object:
    return parse_message((f"{method} sip:canary@192.0.2.1:5062 SIP/2.0\r\n"
                          f"Via: SIP/2.0/UDP 192.0.2.50:5070;branch={branch}\r\n"
                          f"From: <sip:+15551230001@192.0.2.50>;tag=caller\r\nTo: <sip:+15550001@192.0.2.1>;tag={to_tag}\r\n"
                          f"Call-ID: in-1@192.0.2.50\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n").encode())


def core(sdp: str | None = None) -> InboundCore:
    dial = DialRequest(call_id="call_in1", to="+15550001", from_="+15551230001", account_id="acct_1")
    return InboundCore(parse_message(invite(sdp)), CALLER, dial, local_ip="192.0.2.1", sip_port=5062,
                       media_port=40000, timers=Timers(), sdp_session_id=7)


def sent(out) -> list[int | str]:
    return [o.msg.status or o.msg.method for o in out if isinstance(o, Send)]


# --- SDP answer ------------------------------------------------------------------------------

def test_answer_takes_the_offerers_first_g711_codec_and_its_telephone_event():
    ans = parse_sdp(build_answer(parse_sdp(offer_sdp("8 0 101")), "192.0.2.1", 40000, session_id=7))
    assert ans.payloads == (PCMA, 101) and ans.dtmf_pt == 101 and (ans.ip, ans.port) == ("192.0.2.1", 40000)
    ans = parse_sdp(build_answer(parse_sdp(offer_sdp("18 0 96", "a=rtpmap:96 telephone-event/8000\r\n")),
                                 "192.0.2.1", 40000, session_id=7))
    assert ans.payloads == (PCMU, 96) and ans.dtmf_pt == 96  # G.729 skipped; the offer's event payload type


def test_answer_without_telephone_event_offers_none_and_no_g711_is_refused():
    ans = parse_sdp(build_answer(parse_sdp(offer_sdp("0", "")), "192.0.2.1", 40000, session_id=7))
    assert ans.payloads == (PCMU,) and ans.dtmf_pt is None
    with pytest.raises(SdpError):
        build_answer(parse_sdp(offer_sdp("18 9", "")), "192.0.2.1", 40000, session_id=7)


# --- the UAS core ---------------------------------------------------------------------------------

def test_trying_then_ringing_and_200_with_answer_then_ack_confirms():
    c = core()
    assert sent(c.receive(0.0)) == [100]
    out = c.answer(0.1)
    assert sent(out) == [180, 200]
    ok = [o.msg for o in out if isinstance(o, Send)][1]
    assert ok.to.tag == c.local_tag and ok.get("Contact") == "<sip:canary@192.0.2.1:5062>"
    assert parse_sdp(ok.body.decode()).payloads == (PCMA, 101)
    assert Ringing() in out and SetRemoteMedia("192.0.2.50", 6000, PCMA, "PCMA", 101) in out
    assert StartMedia(send=True) in out and Answered() not in out
    assert {o.id for o in out if isinstance(o, ArmTimer)} >= {TIMER_G, TIMER_H}
    # the 200 is retransmitted until the ACK
    assert sent(c.on_timer(TIMER_G, 0.6)) == [200]
    out = c.on_message(request("ACK", 1, "z9hG4bKack", c.local_tag), 0.7, CALLER)
    assert out.count(Answered()) == 1 and c.state == "confirmed"


def test_invite_retransmission_gets_the_same_response_again():
    c = core()
    c.receive(0.0)
    again = c.on_message(parse_message(invite()), 0.5, CALLER)
    assert sent(again) == [100] and c.ended is None


def test_cancel_before_answer_ends_it_canceled_by_the_caller():
    c = core()
    c.receive(0.0)
    out = c.on_message(request("CANCEL", 1, "z9hG4bKcaller1", ""), 1.0, CALLER)
    assert sent(out) == [200, 487]
    [ended] = [o for o in out if isinstance(o, Ended)]
    assert (ended.status, ended.hangup_by, ended.sip_code) == ("canceled", "caller", 487)
    assert Finished() in out and c.final_response.status == 487


def test_bye_from_the_caller_completes_it_hangup_by_caller():
    c = core()
    c.receive(0.0)
    c.answer(0.1)
    c.on_message(request("ACK", 1, "z9hG4bKack", c.local_tag), 0.2, CALLER)
    out = c.on_message(request("BYE", 2, "z9hG4bKbye", c.local_tag), 5.0, CALLER)
    assert sent(out) == [200]
    [ended] = [o for o in out if isinstance(o, Ended)]
    assert (ended.status, ended.hangup_by) == ("completed", "caller")


def test_our_hangup_sends_a_bye_in_the_dialog_to_the_caller():
    c = core()
    c.receive(0.0)
    c.answer(0.1)
    c.on_message(request("ACK", 1, "z9hG4bKack", c.local_tag), 0.2, CALLER)
    out = c.hangup(3.0)
    [bye] = [o for o in out if isinstance(o, Send)]
    assert bye.msg.method == "BYE" and bye.addr == CALLER and bye.msg.uri == "sip:sipp@192.0.2.50:5070"
    assert bye.msg.from_.tag == c.local_tag and bye.msg.to.tag == "caller" and bye.msg.call_id == "in-1@192.0.2.50"


def test_no_ack_within_timer_h_tears_the_call_down():
    c = core()
    c.receive(0.0)
    c.answer(0.1)
    out = c.on_timer(TIMER_H, 32.1)
    assert "BYE" in sent(out) and [o for o in out if isinstance(o, Ended)][0].status == "failed"


def test_an_offer_without_g711_is_answered_488():
    c = core(offer_sdp("18", ""))
    out = c.receive(0.0)
    assert sent(out) == [488] and c.ended.status == "failed"


# --- routing ----------------------------------------------------------------------------------------

def test_route_403_unknown_source_404_unknown_or_unrouted_number():
    d = Directory.build({"acct_a": ["192.0.2.50"], "acct_b": ["192.0.2.50", "198.51.100.7"]},
                        [NumberRoute("acct_b", "+15550001", voice_url="https://app.example/v"),
                         NumberRoute("acct_a", "+15550002"),  # no route: a caller id only
                         NumberRoute("acct_a", "+15550003", flow_id="flow_1", live=False)])  # sandbox shortcut
    assert route(d, "203.0.113.9", "+15550001") == UNKNOWN_SOURCE
    assert route(d, "192.0.2.50", "+15550001") == Accept(d.numbers[("acct_b", "+15550001")])
    assert route(d, "198.51.100.7", "+15550001").route.account_id == "acct_b"
    for number in ("+15550002", "+15550003", "+15559999", None):
        assert route(d, "192.0.2.50", number) == UNKNOWN_NUMBER


def test_dialed_number_reads_e164_user_parts_only():
    assert dialed_number("+15551234567") == "+15551234567"
    assert dialed_number("15551234567;npdi") == "+15551234567"
    assert dialed_number("alice") is None and dialed_number("") is None and dialed_number("+١٢٣٤٥٦٧") is None


def test_route_changes_are_checked_with_the_field_at_fault():
    assert check_changes({"voice_url": "https://app.example/v"}) == {"voice_url": "https://app.example/v",
                                                                     "flow_id": None}
    assert check_changes({"webhook_url": None}) == {"webhook_url": None}
    for body, code, field in [({}, "empty_update", None),
                              ({"voice_url": "https://a.example/", "flow_id": "flow_1"}, "conflicting_fields", "flow_id"),
                              ({"voice_url": "ftp://a.example/"}, "invalid_url", "voice_url"),
                              ({"webhook_url": "http://127.0.0.1/"}, "invalid_url", "webhook_url"),
                              ({"flow_id": 5}, "invalid_field", "flow_id")]:
        with pytest.raises(RouteError) as exc:
            check_changes(body)
        assert (exc.value.code, exc.value.field) == (code, field)


def test_a_voice_url_number_runs_a_valid_one_step_webhook_flow():
    flow = voice_url_flow("https://app.example/voice")
    assert validate_flow(flow) == [] and flow["steps"][flow["start"]]["kind"] == "webhook"


# --- the orchestrator's decision ----------------------------------------------------------------

def test_call_received_is_queued_inbound_and_answered_with_the_voice_url_flow():
    from datetime import datetime, timezone

    from events import new_envelope
    from services.orchestrator.decide import decide
    from services.orchestrator.outputs import Emit

    env = new_envelope("call.received", "call_in1", "acct_1", {
        "to": "+15550001", "from": "+15551230001", "carrier": "sip", "voice_url": "https://app.example/v",
        "webhook_url": "https://app.example/status"})
    dec = decide(None, env, datetime.now(timezone.utc))
    emitted = [o.event for o in dec.outputs if isinstance(o, Emit)]
    assert [e.type for e in emitted] == ["call.queued", "dial.requested"]
    queued, dial = emitted
    assert queued.data["direction"] == "inbound" and queued.data["webhook_url"] == "https://app.example/status"
    assert dial.data["direction"] == "inbound" and dial.data["carrier"] == "sip"
    assert dec.state.flow is not None and dec.state.flow.definition == voice_url_flow("https://app.example/v")
    assert decide(dec.state, env, datetime.now(timezone.utc)).outputs == ()  # a redelivery does nothing
