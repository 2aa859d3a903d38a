"""The SIP call core (services/telephony/sip/core.py) without sockets or an event loop.

A test plays the far end: it reads what the core sends, answers with SIP messages built
from those requests, and moves a virtual clock that fires the timers the core armed.
"""

from __future__ import annotations

import pytest

from services.telephony.carrier import Answered, DtmfReceived, Ended, Ringing, TrunkConfig
from services.telephony.sip.core import (
    ABANDON_INVITE,
    CANCEL_GUARD,
    RING_TIMEOUT,
    CloseMedia,
    Finished,
    SetRemoteMedia,
    StartMedia,
)
from services.telephony.sip.digest import digest_response, parse_challenge
from services.telephony.sip.sdp import PCMA, build_offer, parse_sdp

from .far import ANSWER_SDP, CHALLENGE, FAR, SBC, TRUNK, T, Far, answered, auth_params, started


def test_invite_is_well_formed_and_only_the_ring_and_transaction_timers_run():
    far = started()
    [(at, inv, addr)] = far.sent
    assert addr == TRUNK and inv.uri == "sip:+15550100@192.0.2.10"
    via = inv.top_via
    assert via.branch.startswith("z9hG4bK") and "rport" in via.params and (via.host, via.port) == ("192.0.2.1", 5062)
    assert inv.from_.uri == "sip:+15550199@192.0.2.10" and inv.from_.tag == far.core.local_tag
    assert inv.to.uri == inv.uri and inv.to.tag is None
    assert inv.cseq == (1, "INVITE") and inv.call_id == far.core.sip_call_id
    assert inv.get("Contact") == "<sip:canary@192.0.2.1:5062>" and inv.get("Max-Forwards") == "70"
    offer = parse_sdp(inv.body.decode())
    assert (offer.ip, offer.port) == ("192.0.2.1", 40000)
    assert sorted(t.name for t in far.timers) == ["A", "B", "ring"]
    assert far.timers[RING_TIMEOUT] == 30.0
    assert far.core.state == "calling" and far.events == []


def test_happy_path_ringing_answer_ack_then_our_bye():
    far = answered()
    inv = far.first("INVITE")
    assert far.carrier_events() == [Ringing(early_media=False), Answered()]
    assert SetRemoteMedia("192.0.2.99", 30000, PCMA, "PCMA", 101) in far.events
    assert far.events.index(StartMedia(send=True)) < far.events.index(Answered())
    assert far.core.state == "confirmed" and far.core.remote_tag == "uas"
    # ACK for 2xx: a new transaction (new branch), CSeq of the INVITE, in-dialog
    [(_, ack, ack_addr)] = far.of("ACK")
    assert ack.cseq == (1, "ACK") and ack.top_via.branch != inv.top_via.branch
    assert ack.uri == "sip:callee@192.0.2.30:5080" and ack.to.tag == "uas" and ack.from_.tag == far.core.local_tag
    assert ack.get_all("Route") == ["<sip:192.0.2.21;lr>", f"<sip:{SBC[0]}:{SBC[1]};lr>"]  # reversed Record-Route
    assert ack_addr == ("192.0.2.21", 5060)  # loose routing: the first Route
    assert far.timers == {}  # INVITE transaction over, ring timer canceled
    assert len(far.of("INVITE")) == 1

    far.advance(10)
    far.feed(far.core.hangup(far.now))
    [(_, bye, bye_addr)] = far.of("BYE")
    assert bye.cseq == (2, "BYE") and bye.uri == ack.uri and bye.to.tag == "uas"
    assert bye.get_all("Route") == ack.get_all("Route") and bye_addr == ack_addr
    assert far.ended() == [Ended("completed", "hung up by caller", None, "caller")]
    assert far.events[-2:] == [CloseMedia(), Ended("completed", "hung up by caller", None, "caller")]
    assert far.core.state == "terminated" and Finished() not in far.events  # the BYE is still open
    far.advance(T.t1)
    assert len(far.of("BYE")) == 2  # Timer E retransmits the BYE until its response
    far.respond(bye, 200, "OK")
    assert Finished() not in far.events
    far.advance(T.t4)  # Timer K
    assert far.events[-1] == Finished() and far.timers == {}
    assert len(far.of("BYE")) == 2


def test_invite_retransmitted_until_a_provisional_then_no_timer_b():
    far = started(timeout_s=120)
    far.advance(4.0)
    assert [t for t, _, _ in far.of("INVITE")] == pytest.approx([0, 0.5, 1.5, 3.5])  # Timer A doubles
    assert len({m.encode() for _, m, _ in far.of("INVITE")}) == 1  # the same request, same branch
    far.respond(far.first("INVITE"), 100, "Trying")
    far.advance(100)
    assert len(far.of("INVITE")) == 4 and far.ended() == []  # ringing outlasts 64*T1
    assert far.core.state == "calling"


def test_timer_b_without_any_response_fails_the_call():
    far = started()
    far.advance(64 * T.t1 - 0.01)
    assert far.ended() == []
    far.advance(0.02)
    assert [t for t, _, _ in far.of("INVITE")] == pytest.approx([0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5])
    assert far.ended() == [Ended("failed", "no response from SIP trunk (timeout)", None, "system")]
    assert far.events[-1] == Finished() and far.timers == {}
    assert far.of("CANCEL") == []


def test_busy_486_is_acked_on_the_invite_branch_and_retransmissions_acked_again():
    far = started()
    inv = far.first("INVITE")
    far.respond(inv, 180, "Ringing")
    far.respond(inv, 486, "Busy Here")
    [(_, ack, addr)] = far.of("ACK")
    assert addr == TRUNK and ack.top_via.branch == inv.top_via.branch and ack.uri == inv.uri
    assert ack.cseq == (1, "ACK") and ack.to.tag == "uas" and ack.from_.tag == far.core.local_tag
    assert far.carrier_events() == [Ringing(), Ended("busy", "Busy Here", 486, "callee")]
    assert RING_TIMEOUT not in far.timers
    far.respond(inv, 486, "Busy Here")  # retransmitted final: ACK again, reported once
    assert len(far.of("ACK")) == 2 and len(far.ended()) == 1
    far.advance(32 - 0.01)
    assert Finished() not in far.events  # Timer D (32 s) keeps absorbing retransmissions
    far.respond(inv, 486, "Busy Here")
    assert len(far.of("ACK")) == 3 and len(far.ended()) == 1
    far.advance(0.02)
    assert far.events[-1] == Finished() and far.timers == {}


@pytest.mark.parametrize("code,reason,expect", [
    (404, "Not Found", Ended("failed", "Not Found", 404, "system")),
    (480, "Temporarily Unavailable", Ended("no-answer", "Temporarily Unavailable", 480, "callee")),
    (603, "Decline", Ended("failed", "Decline", 603, "callee")),
])
def test_other_finals_map_as_documented(code, reason, expect):
    far = started()
    far.respond(far.first("INVITE"), code, reason)
    assert far.ended() == [expect] and len(far.of("ACK")) == 1


def test_hangup_while_ringing_cancels_and_487_is_canceled():
    far = started()
    inv = far.first("INVITE")
    far.respond(inv, 180, "Ringing")
    far.advance(2)
    far.feed(far.core.hangup(far.now))
    [(_, cancel, addr)] = far.of("CANCEL")
    assert addr == TRUNK and cancel.uri == inv.uri and cancel.cseq == (1, "CANCEL")
    for h in ("Via", "From", "To", "Call-ID"):
        assert cancel.get(h) == inv.get(h), h  # RFC 3261 9.1: it matches the INVITE
    assert RING_TIMEOUT not in far.timers and CANCEL_GUARD in far.timers
    assert far.ended() == []
    far.respond(cancel, 200, "OK")
    far.respond(inv, 487, "Request Terminated")
    assert far.last("ACK").top_via.branch == inv.top_via.branch
    assert far.ended() == [Ended("canceled", "Request Terminated", 487, "caller")]
    assert CANCEL_GUARD not in far.timers
    far.advance(40)
    assert far.events[-1] == Finished() and far.timers == {}
    assert len(far.ended()) == 1


def test_ring_timeout_cancels_and_487_is_no_answer():
    far = started(timeout_s=5)
    inv = far.first("INVITE")
    far.respond(inv, 183, "Session Progress", body=ANSWER_SDP)
    assert far.carrier_events() == [Ringing(early_media=True)] and StartMedia(send=False) in far.events
    far.advance(5)
    [(at, cancel, _)] = far.of("CANCEL")
    assert at == 5
    far.respond(cancel, 200, "OK")
    far.respond(inv, 487, "Request Terminated")
    assert far.ended() == [Ended("no-answer", "Request Terminated", 487, "system")]


def test_cancel_waits_for_a_provisional():
    far = started()
    inv = far.first("INVITE")
    far.feed(far.core.cancel(far.now))
    assert far.of("CANCEL") == []  # RFC 3261 9.1: not before any provisional
    far.advance(0.7)
    far.respond(inv, 100, "Trying")
    assert len(far.of("CANCEL")) == 1 and far.carrier_events() == []


def test_cancel_without_a_487_is_reported_after_8_t1_and_the_invite_abandoned_at_64_t1():
    far = started()
    inv = far.first("INVITE")
    far.respond(inv, 180, "Ringing")
    far.feed(far.core.hangup(far.now))
    far.respond(far.first("CANCEL"), 200, "OK")
    far.advance(8 * T.t1)
    assert far.ended() == [Ended("canceled", "no final response to CANCEL", None, "caller")]
    assert ABANDON_INVITE in far.timers and Finished() not in far.events
    far.advance(64 * T.t1)
    assert far.events[-1] == Finished() and far.timers == {}


def test_ring_timeout_without_any_response_is_a_failure():
    far = started(timeout_s=2)
    far.advance(2 + 8 * T.t1)
    assert far.of("CANCEL") == []
    assert far.ended() == [Ended("failed", "no response from SIP trunk", None, "system")]


def test_200_crossing_our_cancel_is_acked_then_byed():
    far = started()
    inv = far.first("INVITE")
    far.respond(inv, 180, "Ringing")
    far.feed(far.core.hangup(far.now))
    far.respond(inv, 200, "OK", body=ANSWER_SDP, headers=(("Contact", "<sip:callee@192.0.2.30:5080>"),))
    assert len(far.of("ACK")) == 1 and len(far.of("BYE")) == 1
    assert far.last("BYE").to.tag == "uas" and far.of("BYE")[0][2] == TRUNK
    assert far.ended() == [Ended("canceled", "answered after cancel", None, "caller")]
    assert Answered() not in far.events


def test_duplicate_200_is_acked_again_and_answered_once():
    far = answered()
    inv = far.first("INVITE")
    first_ack = far.last("ACK")
    far.respond(inv, 200, "OK", body=ANSWER_SDP, headers=(("Contact", "<sip:callee@192.0.2.30:5080>"),))
    acks = far.of("ACK")
    assert len(acks) == 2 and acks[1][1].encode() == first_ack.encode() and acks[1][2] == acks[0][2]
    assert far.carrier_events().count(Answered()) == 1
    far.respond(inv, 200, "OK", tag="other-fork")  # a second fork: logged only
    assert len(far.of("ACK")) == 2


def test_401_is_answered_once_with_credentials():
    trunk = TrunkConfig(*TRUNK, username="alice", password="s3cret")
    far = started(trunk=trunk)
    inv1 = far.first("INVITE")
    far.respond(inv1, 401, "Unauthorized", headers=(("WWW-Authenticate", CHALLENGE),))
    [(_, ack401, _)] = far.of("ACK")
    assert ack401.top_via.branch == inv1.top_via.branch
    inv2 = far.last("INVITE")
    assert len(far.of("INVITE")) == 2 and far.ended() == []
    assert inv2.top_via.branch != inv1.top_via.branch and inv2.cseq == (2, "INVITE")
    for h in ("From", "To", "Call-ID", "Contact"):
        assert inv2.get(h) == inv1.get(h), h
    assert inv2.uri == inv1.uri and inv2.body == inv1.body
    params = auth_params(inv2.get("Authorization"))
    assert params["username"] == "alice" and params["uri"] == inv1.uri and params["nc"] == "00000001"
    expect = digest_response(parse_challenge(CHALLENGE), method="INVITE", uri=inv1.uri, username="alice",
                             password="s3cret", cnonce=params["cnonce"], nc=1)
    assert params["response"] == expect
    far.respond(inv2, 200, "OK", body=ANSWER_SDP)
    ack = far.last("ACK")
    assert ack.cseq == (2, "ACK") and ack.get("Authorization") == inv2.get("Authorization")
    assert far.carrier_events() == [Answered()]
    # the first INVITE's 401 retransmitted: its transaction ACKs it again, nothing else happens
    far.respond(inv1, 401, "Unauthorized", headers=(("WWW-Authenticate", CHALLENGE),))
    assert len(far.of("INVITE")) == 2 and far.of("ACK")[-1][1].top_via.branch == inv1.top_via.branch


def test_a_second_401_fails_the_call():
    far = started(trunk=TrunkConfig(*TRUNK, username="alice", password="wrong"))
    far.respond(far.first("INVITE"), 401, "Unauthorized", headers=(("WWW-Authenticate", CHALLENGE),))
    far.respond(far.last("INVITE"), 401, "Unauthorized", headers=(("WWW-Authenticate", CHALLENGE),))
    assert len(far.of("INVITE")) == 2 and len(far.of("ACK")) == 2
    assert far.ended() == [Ended("failed", "Unauthorized", 401, "system")]


def test_407_gets_proxy_authorization_and_no_credentials_means_fail():
    far = started(trunk=TrunkConfig(*TRUNK, username="alice", password="s3cret"))
    far.respond(far.first("INVITE"), 407, "Proxy Authentication Required",
                headers=(("Proxy-Authenticate", CHALLENGE),))
    assert far.last("INVITE").get("Proxy-Authorization") and not far.last("INVITE").get("Authorization")

    far = started()  # trunk without credentials
    far.respond(far.first("INVITE"), 401, "Unauthorized", headers=(("WWW-Authenticate", CHALLENGE),))
    assert len(far.of("INVITE")) == 1 and far.ended()[0].sip_code == 401


def test_bye_from_the_far_end_gets_200_and_ends_once():
    far = answered()
    bye = far.request("BYE", 1)
    [(resp, addr)] = far.responses()
    assert addr == FAR and resp.status == 200 and resp.get("Via") == bye.get("Via") and resp.cseq == (1, "BYE")
    assert far.ended() == [Ended("completed", "callee hung up", None, "callee")]
    assert far.events[-2:] == [Ended("completed", "callee hung up", None, "callee"), Finished()]
    far.request("BYE", 1)  # retransmitted: answered again, still one Ended
    assert len(far.responses()) == 2 and len(far.ended()) == 1
    assert far.of("BYE") == []


def test_in_dialog_options_info_reinvite_and_unknown():
    far = answered()
    far.request("OPTIONS", 1)
    resp, _ = far.responses()[-1]
    assert resp.status == 200 and "BYE" in resp.get("Allow")
    far.request("INFO", 2, body=b"Signal=5\r\nDuration=160\r\n", ctype="application/dtmf-relay")
    assert far.responses()[-1][0].status == 200 and far.events[-1] == DtmfReceived("5", 160, "info")
    new_sdp = build_offer("192.0.2.98", 30002, session_id=9, payloads=(PCMA,)).encode()
    far.request("INVITE", 3, body=new_sdp, ctype="application/sdp")
    resp, addr = far.responses()[-1]
    assert resp.status == 200 and addr == FAR and resp.get("Contact") == far.core.contact
    assert far.events[-1] == SetRemoteMedia("192.0.2.98", 30002, PCMA, "PCMA", 101)
    sdp = resp.body.decode()
    assert "o=canary 7 2 IN IP4" in sdp and "m=audio 40000 RTP/AVP 8 101" in sdp
    far.request("SUBSCRIBE", 4)
    assert far.responses()[-1][0].status == 501
    assert far.ended() == []


def test_media_timeout_sends_bye_and_fails():
    far = answered()
    far.feed(far.core.media_timeout(far.now))
    assert len(far.of("BYE")) == 1 and far.ended() == [Ended("failed", "media timeout", None, "system")]
    far.feed(far.core.media_dtmf("1", 100, "rfc4733"))
    assert DtmfReceived("1", 100, "rfc4733") not in far.events  # nothing after Ended


def test_unusable_sdp_answer_is_byed_and_failed():
    far = started()
    far.respond(far.first("INVITE"), 200, "OK", body=b"v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio 5 RTP/AVP 18\r\n")
    assert len(far.of("ACK")) == 1 and len(far.of("BYE")) == 1
    assert far.ended() == [Ended("failed", "no usable SDP answer", 200, "system")]


def test_bye_challenged_is_retried_with_credentials():
    far = answered(trunk=TrunkConfig(*TRUNK, username="alice", password="s3cret"))
    far.feed(far.core.hangup(far.now))
    bye1 = far.first("BYE")
    far.respond(bye1, 407, "Proxy Authentication Required", headers=(("Proxy-Authenticate", CHALLENGE),))
    bye2 = far.last("BYE")
    assert bye2.cseq == (3, "BYE") and bye2.get("Proxy-Authorization") and bye2.get_all("Route") == bye1.get_all("Route")
    assert far.of("BYE")[-1][2] == far.of("BYE")[0][2]


def test_unsupported_transport_and_hangup_before_invite():
    far = Far(trunk=TrunkConfig(*TRUNK, transport="sctp"))
    far.feed(far.core.invite(0))
    assert far.sent == [] and far.ended()[0].status == "failed" and far.events[-1] == Finished()
    far = Far()
    far.feed(far.core.hangup(0))
    assert far.ended() == [Ended("canceled", "canceled before answer", None, "caller")]


def test_abort_stops_every_timer():
    far = started()
    far.respond(far.first("INVITE"), 180, "Ringing")
    far.feed(far.core.hangup(far.now))
    far.feed(far.core.abort(far.now))
    assert far.timers == {} and far.events[-1] == Finished()
    assert far.ended() == [Ended("failed", "carrier closed", None, "system")]
