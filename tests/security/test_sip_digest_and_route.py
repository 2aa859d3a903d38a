"""SIP digest and next hop (docs/security.md, "SIP signalling and media"): the trunk's
password answers only its own realm's challenges, never the RFC 2069 form (no qop) unless
the trunk allows it, and the ACK (which repeats the INVITE's credentials) and the BYE go
nowhere but the trunk, whatever the 200 OK's Record-Route and Contact say.

The call core is driven without sockets (tests/unit/sip/far.py plays the far end)."""

from __future__ import annotations

from services.telephony.carrier import Answered, Ended, TrunkConfig
from services.telephony.sip.policy import STRICT, TrunkPolicy
from tests.unit.sip.far import ANSWER_SDP, CHALLENGE, TRUNK, Far

CREDS = {"username": "alice", "password": "s3cret"}
OTHER = ("198.51.100.7", 5060)  # not the trunk
NO_QOP = 'Digest realm="canary.test", nonce="abc123", algorithm=MD5'
EVIL_REALM = 'Digest realm="evil.example", nonce="n0", qop="auth", algorithm=MD5'


def call(policy: TrunkPolicy = STRICT, **trunk) -> Far:
    far = Far(trunk=TrunkConfig(*TRUNK, **(CREDS | trunk)), policy=policy)
    far.feed(far.core.invite(far.now))
    return far


def credentials_sent(far: Far) -> list[str]:
    return [m.get(h) for _, m, _ in far.sent for h in ("Authorization", "Proxy-Authorization") if m.get(h)]


def challenge(far: Far, value: str, *, src=TRUNK, code: int = 401) -> None:
    header = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
    far.respond(far.last("INVITE"), code, "Unauthorized", headers=((header, value),), src=src)


# --- realm pinning -----------------------------------------------------------------------
def test_a_challenge_from_another_address_is_not_answered():
    far = call()
    challenge(far, CHALLENGE, src=OTHER)
    assert credentials_sent(far) == [] and len(far.of("INVITE")) == 1
    [ended] = far.ended()
    assert ended.status == "failed" and "not from the trunk" in ended.reason and ended.sip_code == 401


def test_the_first_realm_from_the_trunk_is_pinned_for_the_call():
    far = call()
    challenge(far, CHALLENGE)
    assert len(credentials_sent(far)) == 1  # the trunk's own realm: answered
    # the retried INVITE challenged again (stale nonce) but for another realm: refused
    challenge(far, EVIL_REALM.replace('qop="auth"', 'qop="auth", stale=true'))
    assert len(credentials_sent(far)) == 1
    assert "realm 'evil.example'" in far.ended()[0].reason


def test_a_configured_realm_is_the_only_one_answered():
    far = call(TrunkPolicy(realm="canary.test"))
    challenge(far, EVIL_REALM)
    assert credentials_sent(far) == [] and far.ended()[0].status == "failed"
    far = call(TrunkPolicy(realm="canary.test"))
    challenge(far, CHALLENGE, code=407)
    assert far.last("INVITE").get("Proxy-Authorization")


def test_a_bye_challenged_for_another_realm_is_not_answered():
    far = call()
    challenge(far, CHALLENGE)
    far.respond(far.last("INVITE"), 200, "OK", body=ANSWER_SDP)
    far.feed(far.core.hangup(far.now))
    far.respond(far.last("BYE"), 407, "Proxy Authentication Required",
                headers=(("Proxy-Authenticate", EVIL_REALM),))
    assert len(far.of("BYE")) == 1 and not far.last("BYE").get("Proxy-Authorization")


# --- legacy digest -------------------------------------------------------------------------
def test_md5_without_qop_is_refused_unless_the_trunk_allows_it():
    far = call()
    challenge(far, NO_QOP)
    assert credentials_sent(far) == []
    [ended] = far.ended()
    assert ended.status == "failed" and "without qop" in ended.reason

    far = call(TrunkPolicy(allow_legacy_digest=True))
    challenge(far, NO_QOP)
    assert len(credentials_sent(far)) == 1 and "qop=" not in credentials_sent(far)[0]


# --- next hop --------------------------------------------------------------------------------
def answer(far: Far, *headers: tuple[str, str]) -> None:
    far.respond(far.last("INVITE"), 200, "OK", body=ANSWER_SDP, headers=headers)


def sent_to(far: Far) -> set[tuple[str, int]]:
    return {addr for _, _, addr in far.sent}


def test_a_record_route_off_the_trunk_ends_the_call_and_nothing_goes_there():
    far = call()
    challenge(far, CHALLENGE)
    answer(far, ("Contact", f"<sip:callee@{TRUNK[0]}>"), ("Record-Route", "<sip:127.0.0.1:5432;lr>"))
    assert sent_to(far) == {TRUNK}  # the ACK (with the credentials) and the BYE: to the trunk
    ack = far.last("ACK")
    assert ack.get("Authorization") and ack.get_all("Route") == []
    assert len(far.of("BYE")) == 1 and far.last("BYE").get_all("Route") == []
    assert Answered() not in far.events
    [ended] = far.ended()
    assert ended == Ended("failed", "SIP trunk answered with a Record-Route off the trunk (127.0.0.1): refused",
                          200, "system")


def test_a_contact_off_the_trunk_ends_the_call_and_is_never_a_request_uri():
    far = call()
    answer(far, ("Contact", "<sip:x@10.0.0.5:9092>"))
    assert sent_to(far) == {TRUNK}
    assert all("10.0.0.5" not in (m.uri or "") for _, m, _ in far.sent)
    assert "Contact off the trunk (10.0.0.5)" in far.ended()[0].reason


def test_hops_on_the_trunk_are_followed_by_its_vetted_address():
    far = Far(trunk=TrunkConfig("sip.trunk.example", TRUNK[1], address=TRUNK[0]), policy=STRICT)
    far.feed(far.core.invite(far.now))
    answer(far, ("Contact", "<sip:callee@sip.trunk.example>"), ("Record-Route", "<sip:sip.trunk.example:5070;lr>"))
    assert far.carrier_events()[-1] == Answered()
    assert far.of("ACK")[0][2] == (TRUNK[0], 5070)  # the name is not resolved again


def test_a_trunk_allowed_foreign_hops_follows_them():
    far = call(TrunkPolicy(allow_foreign_hops=True))
    answer(far, ("Contact", "<sip:callee@192.0.2.30>"), ("Record-Route", "<sip:192.0.2.20:5070;lr>"))
    assert far.carrier_events()[-1] == Answered() and far.of("ACK")[0][2] == ("192.0.2.20", 5070)
    assert far.core.peer_ips == {TRUNK[0], "192.0.2.20", "192.0.2.30"}
