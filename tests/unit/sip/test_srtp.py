"""SRTP with SDES: the a=crypto attribute (RFC 4568), the offer/answer rules of a trunk's
`srtp` mode, and the call core's outputs (services/telephony/sip/srtp.py, sdp.py, core.py, uas.py)."""

from __future__ import annotations

import base64

import pytest

from services.telephony.carrier import Ended, TrunkConfig
from services.telephony.sip.core import SetRemoteMedia
from services.telephony.sip.sdp import PCMU, build_offer, parse_sdp
from services.telephony.sip.srtp import (
    Crypto,
    CryptoError,
    SrtpKeys,
    keys_of_answer,
    keys_of_offer,
    new_key,
    our_offer,
    parse_crypto,
)

from .far import TRUNK, started

KEY = bytes(range(30))
B64 = base64.b64encode(KEY).decode()
S80, S32 = "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"


def test_a_crypto_line_round_trips_and_hides_its_key():
    c = Crypto(3, S80, KEY)
    assert c.attribute() == f"3 {S80} inline:{B64}"
    assert parse_crypto(c.attribute()) == c
    assert B64 not in repr(c) and str(KEY) not in repr(c)
    assert B64 not in repr(SrtpKeys(S80, KEY, KEY))


@pytest.mark.parametrize("params", [f"inline:{B64}|2^31", f"inline:{B64}|2^48", f"inline:{B64}|4294967296"])
def test_a_long_enough_lifetime_is_taken(params):
    assert parse_crypto(f"1 {S32} {params}") == Crypto(1, S32, KEY)


@pytest.mark.parametrize("value, why", [
    (f"1 AES_256_CM_HMAC_SHA1_80 inline:{B64}", "unsupported crypto suite"),  # a suite we do not do
    (f"1 F8_128_HMAC_SHA1_80 inline:{B64}", "unsupported crypto suite"),
    (f"1 {S80} inline:not*base64!", "not base64"),  # bad base64
    (f"1 {S80} inline:{B64[:-4]}", "must be 30 bytes, not 27"),  # key + salt too short
    (f"1 {S80} inline:{base64.b64encode(bytes(46)).decode()}", "must be 30 bytes, not 46"),  # a 256-bit key
    (f"1 {S80} inline:{B64}|2^20", "lifetime is too short"),  # we never re-key
    (f"1 {S80} inline:{B64}|2^x", "bad key lifetime"),
    (f"1 {S80} inline:{B64}|1:4", "MKI is not supported"),  # an MKI field we would not read
    (f"1 {S80} inline:{B64}|2^31|1:4", "MKI is not supported"),
    (f"1 {S80} inline:{B64};inline:{B64}", "more than one key"),
    (f"1 {S80} inline:{B64} KDR=1", "session parameters"),
    (f"1 {S80} uri:https://keys.example/", "not inline"),
    (f"x {S80} inline:{B64}", "bad crypto tag"),
    (f"1 {S80}", "needs a tag"),
])
def test_a_crypto_line_we_cannot_use_says_why_without_the_key(value, why):
    with pytest.raises(CryptoError) as exc:
        parse_crypto(value)
    assert why in str(exc.value)
    assert B64 not in str(exc.value)


def test_offers_carry_fresh_keys():
    a, b = our_offer(), our_offer()
    assert [(c.tag, c.suite) for c in a] == [(1, S80), (2, S32)]
    assert len({c.key for c in (*a, *b)}) == 4 and len(new_key()) == 30


def test_sdp_with_crypto_is_savp_and_its_lines_are_read_but_not_shown():
    offered = our_offer()
    body = build_offer("192.0.2.1", 40000, session_id=1, crypto=offered)
    assert "m=audio 40000 RTP/SAVP 0 8 101" in body
    sdp = parse_sdp(body)
    assert sdp.proto == "RTP/SAVP" and sdp.crypto == tuple(c.attribute() for c in offered)
    assert "inline" not in repr(sdp)
    assert parse_sdp(build_offer("192.0.2.1", 40000, session_id=1)).proto == "RTP/AVP"


def _sdp(proto: str, *crypto: str) -> object:
    return parse_sdp("v=0\r\nc=IN IP4 192.0.2.9\r\n" f"m=audio 4000 {proto} 0\r\n"
                     + "".join(f"a=crypto:{c}\r\n" for c in crypto))


def test_answerer_modes():
    savp = _sdp("RTP/SAVP", f"1 AES_256_CM_HMAC_SHA1_80 inline:{B64}", f"7 {S32} inline:{B64}")
    ours, keys = keys_of_offer("required", savp)
    assert (ours.tag, ours.suite, keys.remote, keys.local) == (7, S32, KEY, ours.key) and ours.key != KEY
    assert keys_of_offer("optional", savp)[1].suite == S32  # optional takes SRTP when offered
    assert keys_of_offer("optional", _sdp("RTP/AVP")) is None  # ... and plain RTP too
    assert keys_of_offer("off", _sdp("RTP/AVP")) is None
    for mode, sdp, why in [
        ("required", _sdp("RTP/AVP"), "requires SRTP"),
        ("off", savp, "SRTP is off"),
        ("required", _sdp("RTP/SAVP", f"1 {S80} inline:{B64}|1:4"), "no a=crypto line we support"),
        ("required", _sdp("RTP/SAVP"), "no a=crypto line we support"),
        ("required", _sdp("UDP/TLS/RTP/SAVP", f"1 {S80} inline:{B64}"), "not supported"),
    ]:
        with pytest.raises(CryptoError, match=why):
            keys_of_offer(mode, sdp)


def test_offerer_takes_only_an_answer_matching_a_line_it_offered():
    offered = our_offer()
    keys = keys_of_answer(_sdp("RTP/SAVP", f"2 {S32} inline:{B64}"), offered)
    assert keys == SrtpKeys(S32, offered[1].key, KEY)
    assert keys_of_answer(_sdp("RTP/AVP"), ()) is None
    for sdp, why in [
        (_sdp("RTP/AVP"), "plain RTP"),
        (_sdp("RTP/SAVP", f"2 {S80} inline:{B64}"), "no a=crypto line matching"),  # tag 2 was _32
        (_sdp("RTP/SAVP", f"9 {S80} inline:{B64}"), "no a=crypto line matching"),  # a tag never offered
        (_sdp("RTP/SAVP", f"1 {S80} inline:AAAA"), "no a=crypto line matching"),
    ]:
        with pytest.raises(CryptoError, match=why):
            keys_of_answer(sdp, offered)
    with pytest.raises(CryptoError, match="RTP/SAVP to our RTP/AVP"):
        keys_of_answer(_sdp("RTP/SAVP", f"1 {S80} inline:{B64}"), ())


def _answer(proto: str, *crypto: str) -> bytes:
    return (f"v=0\r\no=x 1 1 IN IP4 192.0.2.99\r\ns=x\r\nc=IN IP4 192.0.2.99\r\nt=0 0\r\n"
            f"m=audio 30000 {proto} 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
            + "".join(f"a=crypto:{c}\r\n" for c in crypto)).encode()


def test_a_required_trunk_offers_savp_and_keys_the_media_from_the_answer():
    far = started(trunk=TrunkConfig(*TRUNK, srtp="required"))
    offer = parse_sdp(far.first("INVITE").body.decode())
    assert offer.proto == "RTP/SAVP" and len(offer.crypto) == 2
    mine = parse_crypto(offer.crypto[0])
    invite = far.first("INVITE")
    assert b"inline:" in invite.body and "inline:" not in repr(invite) + invite.redacted()  # what logs see
    far.respond(far.first("INVITE"), 200, "OK", body=_answer("RTP/SAVP", f"1 {S80} inline:{B64}"))
    assert SetRemoteMedia("192.0.2.99", 30000, PCMU, "PCMU", 101, SrtpKeys(S80, mine.key, KEY)) in far.events
    assert far.core.state == "confirmed" and not far.ended()


@pytest.mark.parametrize("body, why", [
    (_answer("RTP/AVP"), "plain RTP"),
    (_answer("RTP/SAVP", f"1 {S80} inline:{B64}|1:4"), "no a=crypto line matching"),
])
def test_a_required_trunk_whose_answer_has_no_usable_crypto_acks_byes_and_fails_saying_why(body, why):
    far = started(trunk=TrunkConfig(*TRUNK, srtp="required"))
    far.respond(far.first("INVITE"), 200, "OK", body=body)
    assert len(far.of("ACK")) == 1 and len(far.of("BYE")) == 1
    [ended] = far.ended()
    assert ended.status == "failed" and ended.sip_code == 200 and why in ended.reason and "SRTP" in ended.reason
    assert not any(isinstance(e, SetRemoteMedia) for e in far.events)


def test_an_off_or_optional_trunk_offers_plain_rtp():
    for mode in ("off", "optional"):
        far = started(trunk=TrunkConfig(*TRUNK, srtp=mode))
        offer = parse_sdp(far.first("INVITE").body.decode())
        assert offer.proto == "RTP/AVP" and offer.crypto == ()


def test_a_reinvite_keeps_our_key_takes_the_peers_new_one_and_may_not_drop_srtp():
    far = started(trunk=TrunkConfig(*TRUNK, srtp="required"))
    mine = parse_crypto(parse_sdp(far.first("INVITE").body.decode()).crypto[0])
    far.respond(far.first("INVITE"), 200, "OK", body=_answer("RTP/SAVP", f"1 {S80} inline:{B64}"))
    new = base64.b64encode(bytes(30)).decode()
    far.request("INVITE", 2, body=_answer("RTP/SAVP", f"5 {S80} inline:{new}"), ctype="application/sdp")
    ok = far.responses()[-1][0]
    assert ok.status == 200
    assert parse_sdp(ok.body.decode()).crypto == (Crypto(5, S80, mine.key).attribute(),)
    assert far.events[-1] == SetRemoteMedia("192.0.2.99", 30000, PCMU, "PCMU", 101, SrtpKeys(S80, mine.key, bytes(30)))
    far.request("INVITE", 3, body=_answer("RTP/AVP"), ctype="application/sdp")
    assert far.responses()[-1][0].status == 488
    assert far.core.srtp_keys == SrtpKeys(S80, mine.key, bytes(30)) and not far.ended()


def _inbound(mode: str, body: bytes):
    from services.telephony.carrier import DialRequest
    from services.telephony.sip.message import SipMessage, parse_message
    from services.telephony.sip.uas import InboundCore

    inv = SipMessage(method="INVITE", uri="sip:+15550100@192.0.2.1")
    for k, v in (("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKin1"), ("From", "<sip:1000@192.0.2.10>;tag=a"),
                 ("To", "<sip:+15550100@192.0.2.1>"), ("Call-ID", "in1"), ("CSeq", "1 INVITE"),
                 ("Contact", "<sip:1000@192.0.2.10>"), ("Content-Type", "application/sdp")):
        inv.add(k, v)
    inv.body = body
    core = InboundCore(parse_message(inv.encode()), TRUNK, DialRequest("c1", "+15550100", "1000"),
                       local_ip="192.0.2.1", sip_port=5060, media_port=40000, srtp=mode)
    return core, core.receive(0.0)


def test_inbound_srtp_is_answered_with_our_own_key_under_the_offers_tag():
    core, out = _inbound("required", _answer("RTP/SAVP", f"4 {S32} inline:{B64}"))
    assert [o.msg.status for o in out if hasattr(o, "msg")] == [100]
    out = core.answer(0.0)
    ok = next(o.msg for o in out if getattr(o, "msg", None) is not None and o.msg.status == 200)
    sdp = parse_sdp(ok.body.decode())
    [line] = sdp.crypto
    ours = parse_crypto(line)
    assert sdp.proto == "RTP/SAVP" and (ours.tag, ours.suite) == (4, S32) and ours.key != KEY
    [media] = [o for o in out if isinstance(o, SetRemoteMedia)]
    assert media.srtp == SrtpKeys(S32, ours.key, KEY)


@pytest.mark.parametrize("mode, body, why", [
    ("required", _answer("RTP/AVP"), "requires SRTP"),
    ("off", _answer("RTP/SAVP", f"1 {S80} inline:{B64}"), "SRTP is off"),
    ("optional", _answer("RTP/SAVP", f"1 AES_256_CM_HMAC_SHA1_80 inline:{B64}"), "no a=crypto line we support"),
])
def test_inbound_offer_that_does_not_fit_the_trunk_is_488(mode, body, why):
    core, out = _inbound(mode, body)
    assert [o.msg.status for o in out if hasattr(o, "msg")] == [488]
    [ended] = [o for o in out if isinstance(o, Ended)]
    assert ended.status == "failed" and ended.sip_code == 488 and why in ended.reason


def test_inbound_plain_rtp_on_an_optional_trunk_is_plain():
    core, out = _inbound("optional", _answer("RTP/AVP"))
    out = core.answer(0.0)
    [media] = [o for o in out if isinstance(o, SetRemoteMedia)]
    assert media.srtp is None


def test_failing_over_to_the_next_server_offers_fresh_keys_and_the_answer_is_read_against_them():
    from services.telephony.sip.locate import Target

    a, b = Target("192.0.2.10", 5070, "sip1.example.net"), Target("192.0.2.11", 5080, "sip2.example.net")
    trunk = TrunkConfig("example.net", None, "tls", address=a.address, targets=(a, b), srtp="required")
    far = started(trunk=trunk)
    first = parse_sdp(far.first("INVITE").body.decode()).crypto
    far.respond(far.first("INVITE"), 503, "Service Unavailable", src=(a.address, a.port))
    second_invite = far.last("INVITE")
    second = parse_sdp(second_invite.body.decode()).crypto
    assert len(far.of("INVITE")) == 2 and len(second) == 2
    assert {parse_crypto(c).key for c in first}.isdisjoint(parse_crypto(c).key for c in second)
    far.respond(second_invite, 200, "OK", body=_answer("RTP/SAVP", f"1 {S80} inline:{B64}"), src=(b.address, b.port))
    [media] = [e for e in far.events if isinstance(e, SetRemoteMedia)]
    assert media.srtp == SrtpKeys(S80, parse_crypto(second[0]).key, KEY)
