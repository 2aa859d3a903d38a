"""Reliable provisionals (RFC 3262) in the call core, without sockets: the INVITE offers
100rel, each reliable provisional is PRACKed once and in order, and the call goes on to
its answer as without them."""

from __future__ import annotations

from services.telephony.carrier import Answered, Ringing
from services.telephony.sip.policy import STRICT

from .far import ANSWER_SDP, started


def reliable(far, code=183, rseq="1", contact="<sip:callee@192.0.2.10:5060>", extra=()):
    inv = far.first("INVITE")
    return far.respond(inv, code, "Session Progress", headers=(("Require", "100rel"), ("RSeq", rseq),
                                                              ("Contact", contact), *extra))


def test_invite_offers_100rel():
    far = started()
    assert "100rel" in far.first("INVITE").get("Supported")


def test_a_reliable_provisional_is_pracked_in_its_early_dialog():
    far = started()
    reliable(far)
    [(_, prack, addr)] = far.of("PRACK")
    inv = far.first("INVITE")
    assert prack.get("RAck") == f"1 {inv.cseq[0]} INVITE" and prack.cseq == (inv.cseq[0] + 1, "PRACK")
    assert prack.to.tag == "uas" and prack.from_.tag == far.core.local_tag and prack.call_id == inv.call_id
    assert prack.uri == "sip:callee@192.0.2.10:5060" and addr == far.core.dest
    assert prack.top_via.branch != inv.top_via.branch
    assert far.carrier_events() == [Ringing(early_media=False)]
    far.respond(prack, 200, "OK")
    far.respond(inv, 200, "OK", body=ANSWER_SDP, headers=(("Contact", "<sip:callee@192.0.2.10>"),))
    assert far.carrier_events() == [Ringing(early_media=False), Answered()]  # the 2xx is the answer, not a resend
    assert far.core.state == "confirmed"
    far.feed(far.core.hangup(far.now))
    assert far.last("BYE").cseq == (inv.cseq[0] + 2, "BYE")


def test_retransmitted_or_out_of_order_provisionals_are_not_pracked_again():
    far = started()
    reliable(far, rseq="7")
    reliable(far, rseq="7")  # the UAS retransmits until our PRACK arrives: the PRACK's own timer covers it
    reliable(far, rseq="9")  # skips 8: not acknowledged (RFC 3262 4)
    reliable(far, code=180, rseq="8")
    assert [p.get("RAck").split()[0] for _, p, _ in far.of("PRACK")] == ["7", "8"]


def test_unreliable_or_unreadable_provisionals_get_no_prack():
    far = started()
    inv = far.first("INVITE")
    far.respond(inv, 180, "Ringing")  # no Require: 100rel
    reliable(far, rseq="x")
    reliable(far, rseq="0")
    far.respond(inv, 100, "Trying", headers=(("Require", "100rel"), ("RSeq", "1")))  # 100 is never reliable
    assert far.of("PRACK") == [] and far.carrier_events() == [Ringing(early_media=False)]


def test_strict_trunk_pracks_through_the_trunk_not_a_contact_off_it():
    far = started(policy=STRICT)
    reliable(far, contact="<sip:evil@198.51.100.66:5060>", extra=(("Record-Route", "<sip:198.51.100.67;lr>"),))
    [(_, prack, addr)] = far.of("PRACK")
    assert prack.uri == far.core.request_uri and prack.get_all("Route") == [] and addr == far.core.dest
