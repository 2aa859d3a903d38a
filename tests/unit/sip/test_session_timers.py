"""Session timers (RFC 4028) in the call core, on a virtual clock: we refresh with UPDATE
when we are the refresher, end the call when the far end lets its session lapse, and
answer the far end's refreshes."""

from __future__ import annotations

from services.telephony.carrier import Ended
from services.telephony.sip.core import SESSION_EXPIRY, SESSION_REFRESH

from .far import ANSWER_SDP, T, started


def answered_with(session_expires: str | None):
    far = started()
    inv = far.first("INVITE")
    headers = [("Contact", "<sip:callee@192.0.2.10>")]
    if session_expires:
        headers.append(("Session-Expires", session_expires))
    far.respond(inv, 200, "OK", body=ANSWER_SDP, headers=tuple(headers))
    return far


def test_the_invite_offers_session_timers():
    inv = started().first("INVITE")
    assert "timer" in inv.get("Supported") and inv.get("Session-Expires") == "1800" and inv.get("Min-SE") == "90"


def test_without_session_expires_in_the_answer_there_is_no_timer():
    far = answered_with(None)
    assert far.core.session is None and SESSION_REFRESH not in far.timers and SESSION_EXPIRY not in far.timers


def test_we_refresh_at_half_the_interval_until_the_call_ends():
    far = answered_with("10;refresher=uac")
    assert far.core.session == (10, "uac") and far.timers[SESSION_REFRESH] == far.now + 5
    far.advance(5)
    [(_, upd, _)] = far.of("UPDATE")
    assert upd.get("Session-Expires") == "10;refresher=uac" and upd.to.tag == "uas" and upd.body == b""
    far.respond(upd, 200, "OK", headers=(("Session-Expires", "10;refresher=uac"),))
    far.advance(5)
    assert len(far.of("UPDATE")) == 2 and far.ended() == []


def test_a_refresh_the_far_end_no_longer_knows_ends_the_call():
    far = answered_with("10;refresher=uac")
    far.advance(5)
    far.respond(far.last("UPDATE"), 481, "Call Does Not Exist")
    assert far.ended() == [Ended("failed", "session refresh refused (481)", None, "system")]
    assert len(far.of("BYE")) == 1


def test_an_unanswered_refresh_ends_the_call():
    far = answered_with("10;refresher=uac")
    far.advance(5 + 64 * T.t1)  # Timer F of the UPDATE
    assert far.ended() == [Ended("failed", "session refresh unanswered", None, "system")]


def test_the_far_end_refreshes_and_a_lapsed_session_is_hung_up():
    far = answered_with("30;refresher=uas")
    assert far.timers[SESSION_EXPIRY] == far.now + 30 - 10  # BYE a third of the interval early
    far.advance(15)
    far.request("UPDATE", 2, headers=(("Session-Expires", "30;refresher=uas"),))
    [(resp, _)] = [r for r in far.responses() if r[0].cseq == (2, "UPDATE")]
    assert resp.status == 200 and resp.get("Session-Expires") == "30;refresher=uas" and resp.get("Require") == "timer"
    far.advance(19)
    assert far.ended() == []  # the refresh moved the expiry
    far.advance(2)
    assert far.ended() == [Ended("failed", "session expired: the far end did not refresh it", None, "system")]
    assert {m.cseq for _, m, _ in far.of("BYE")} == {(2, "BYE")}  # one BYE (and its Timer E resends)


def test_an_update_that_changes_the_media_is_refused_and_the_call_goes_on():
    far = answered_with(None)
    far.request("UPDATE", 2, body=ANSWER_SDP, ctype="application/sdp")
    [(resp, _)] = [r for r in far.responses() if r[0].cseq == (2, "UPDATE")]
    assert resp.status == 488 and far.ended() == [] and far.core.state == "confirmed"


def test_an_unreadable_session_expires_is_no_timer():
    far = answered_with("soon;refresher=uac")
    assert far.core.session is None and SESSION_REFRESH not in far.timers
