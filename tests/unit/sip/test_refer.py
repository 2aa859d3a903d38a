"""Blind transfer (RFC 3515) in the call core, without sockets: our in-dialog REFER, its
response, and the NOTIFYs whose sipfrag says how the far end's call to the target went."""

from __future__ import annotations

import pytest

from services.telephony.carrier import Ended, TransferProgress
from services.telephony.sip.core import parse_sipfrag, refer_target

from .far import FAR, SBC, T, answered, started

SIPFRAG = "message/sipfrag;version=2.0"


def notify(far, frag: str | None, cseq: int, *, state="active;expires=60", event="refer", ctype=SIPFRAG):
    headers = (("Event", event), ("Subscription-State", state)) if event else (("Subscription-State", state),)
    far.request("NOTIFY", cseq, body=frag.encode() if frag is not None else b"", ctype=ctype if frag else "",
                headers=headers)
    [(resp, addr)] = [(m, a) for m, a in far.responses() if m.cseq == (cseq, "NOTIFY")]
    assert addr == FAR
    return resp.status


def referred(target="tel:+15550111"):
    far = answered()
    far.feed(far.core.refer(target, far.now))
    return far, far.last("REFER")


def test_refer_is_sent_in_the_dialog_with_the_target_as_given():
    far, refer = referred("tel:+15550111;phone-context=example.com")
    inv = far.first("INVITE")
    [(_, _, addr)] = far.of("REFER")
    assert refer.uri == "sip:callee@192.0.2.30:5080"  # the remote target, through the route set
    assert refer.get_all("Route") == ["<sip:192.0.2.21;lr>", f"<sip:{SBC[0]}:{SBC[1]};lr>"]
    assert addr == ("192.0.2.21", 5060)
    assert refer.get("Refer-To") == "<tel:+15550111;phone-context=example.com>"
    assert refer.get("Referred-By") == "<sip:+15550199@192.0.2.10>"  # our From URI
    assert refer.to.tag == "uas" and refer.from_.tag == far.core.local_tag and refer.call_id == inv.call_id
    assert refer.cseq == (inv.cseq[0] + 1, "REFER") and refer.get("Contact")
    assert "REFER" in inv.get("Allow") and "NOTIFY" in inv.get("Allow")


@pytest.mark.parametrize("target, uri", [
    ("+15550111", "tel:+15550111"),
    ("tel:+1-555-0111", "tel:+1-555-0111"),
    ("sip:agent@pbx.example.com;transport=tcp", "sip:agent@pbx.example.com;transport=tcp"),
    ("sips:agent@pbx.example.com", "sips:agent@pbx.example.com"),
])
def test_refer_to_keeps_uris_and_makes_e164_a_tel_uri(target, uri):
    assert refer_target(target) == uri
    _, refer = referred(target)
    assert refer.get("Refer-To") == f"<{uri}>"


@pytest.mark.parametrize("target", ["5550111", "http://x", "sip:", "sip:a b@c", "sip:a@b>;x=<y", "+0123"])
def test_a_bad_target_is_refused_before_anything_is_sent(target):
    far = answered()
    with pytest.raises(ValueError):
        far.core.refer(target, far.now)
    assert far.of("REFER") == []


def test_no_refer_before_the_answer_or_while_one_is_in_progress():
    far = started()
    assert far.core.refer("+15550111", far.now) == [] and far.of("REFER") == []
    far, _ = referred()
    assert far.core.refer("+15550112", far.now) == [] and len(far.of("REFER")) == 1


def test_accepted_then_notified_trying_ringing_ok_ends_the_call_transferred():
    far, refer = referred()
    far.respond(refer, 202, "Accepted", src=SBC)
    assert notify(far, "SIP/2.0 100 Trying\r\n", 1) == 200
    assert notify(far, "SIP/2.0 180 Ringing", 2) == 200
    assert far.ended() == [] and far.core.state == "confirmed"
    assert notify(far, "SIP/2.0 200 OK\r\n", 3, state="terminated;reason=noresource") == 200
    assert far.transfer() == [TransferProgress(202, "Accepted"), TransferProgress(100, "Trying"),
                              TransferProgress(180, "Ringing"), TransferProgress(200, "OK", final=True)]
    assert far.transfer()[-1].succeeded
    bye = far.last("BYE")
    assert bye.cseq == (refer.cseq[0] + 1, "BYE") and bye.to.tag == "uas"
    assert far.ended() == [Ended("completed", "transferred to tel:+15550111", None, "system")]
    assert far.carrier_events()[-1] == far.ended()[0]  # the transfer's outcome comes before the end
    far.respond(bye, 200, "OK", src=SBC)
    far.advance(64 * T.t1)
    assert far.core.finished


def test_a_busy_target_fails_the_transfer_and_the_call_goes_on():
    far, refer = referred()
    far.respond(refer, 202, "Accepted", src=SBC)
    notify(far, "SIP/2.0 100 Trying", 1)
    assert notify(far, "SIP/2.0 486 Busy Here", 2, state="terminated;reason=noresource") == 200
    assert far.transfer()[-1] == TransferProgress(486, "Busy Here", final=True)
    assert not far.transfer()[-1].succeeded
    assert far.ended() == [] and far.core.state == "confirmed" and far.of("BYE") == []
    assert notify(far, "SIP/2.0 200 OK", 3) == 481  # the subscription is over
    assert far.ended() == []
    far.feed(far.core.refer("sip:agent@pbx.example.com", far.now))  # another transfer may be tried
    assert far.last("REFER").get("Refer-To") == "<sip:agent@pbx.example.com>"
    far.feed(far.core.hangup(far.now))
    assert far.ended()[0].status == "completed" and far.ended()[0].hangup_by == "caller"


@pytest.mark.parametrize("code, reason", [(403, "Forbidden"), (405, "Method Not Allowed"), (501, "Not Implemented")])
def test_a_refused_refer_fails_the_transfer_and_the_call_goes_on(code, reason):
    far, refer = referred()
    far.respond(refer, code, reason, src=SBC)
    assert far.transfer() == [TransferProgress(code, reason, final=True)]
    assert far.ended() == [] and far.core.state == "confirmed" and far.of("BYE") == []
    assert notify(far, "SIP/2.0 200 OK", 1) == 481


def test_an_unanswered_refer_fails_the_transfer():
    far, _ = referred()
    far.advance(64 * T.t1 + 1)
    assert far.transfer() == [TransferProgress(408, "REFER not answered", final=True)]
    assert far.ended() == []


def test_notify_without_a_subscription_is_481_and_other_packages_489():
    far = answered()
    assert notify(far, "SIP/2.0 200 OK", 1) == 481
    far.feed(far.core.refer("+15550111", far.now))
    assert notify(far, "SIP/2.0 200 OK", 2, event="presence") == 489
    assert notify(far, "SIP/2.0 200 OK", 3, event="refer;id=999") == 481  # another REFER's subscription
    assert far.transfer() == [] and far.ended() == []
    refer = far.last("REFER")
    assert notify(far, "SIP/2.0 180 Ringing", 4, event=f"refer;id={refer.cseq[0]}") == 200
    assert far.transfer() == [TransferProgress(180, "Ringing")]


def test_a_notify_may_overtake_the_202():
    far, refer = referred()
    assert notify(far, "SIP/2.0 100 Trying", 1) == 200
    far.respond(refer, 202, "Accepted", src=SBC)
    assert far.transfer() == [TransferProgress(100, "Trying"), TransferProgress(202, "Accepted")]


def test_an_unreadable_sipfrag_is_answered_and_ignored():
    far, refer = referred()
    far.respond(refer, 202, "Accepted", src=SBC)
    assert notify(far, "HTTP/1.1 200 OK", 1) == 200
    assert notify(far, "SIP/2.0 2000 OK", 2) == 200
    assert notify(far, "SIP/2.0 180 Ringing", 3, ctype="text/plain") == 200
    assert notify(far, None, 4) == 200
    assert far.transfer() == [TransferProgress(202, "Accepted")] and far.ended() == []
    assert notify(far, "SIP/2.0 200 OK", 5) == 200
    assert far.ended()[0].reason == "transferred to tel:+15550111"


def test_a_subscription_terminated_without_an_outcome_fails_the_transfer():
    far, refer = referred()
    far.respond(refer, 202, "Accepted", src=SBC)
    notify(far, "SIP/2.0 100 Trying", 1, state="terminated;reason=timeout")
    assert far.transfer()[-1] == TransferProgress(None, "transfer outcome not reported", final=True)
    assert far.ended() == []


def test_the_far_end_hanging_up_mid_transfer_ends_the_call_as_before():
    far, refer = referred()
    far.respond(refer, 202, "Accepted", src=SBC)
    far.request("BYE", 1)
    assert far.ended()[0].hangup_by == "callee"
    assert notify(far, "SIP/2.0 200 OK", 2) == 481


def test_parse_sipfrag():
    assert parse_sipfrag(b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n\r\n") == (486, "Busy Here")
    assert parse_sipfrag(b"SIP/2.0 100") == (100, "")
    assert parse_sipfrag(b"") is None and parse_sipfrag(b"INVITE sip:x SIP/2.0") is None
