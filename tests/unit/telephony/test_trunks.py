"""Trunk validation, password sealing, caller-ID rules, callee scripts and durations (no I/O)."""

from __future__ import annotations

import asyncio

import pytest

from services.lib import trunks
from services.lib.trunks import TrunkError
from services.telephony.carrier import DialRequest, TrunkConfig
from services.telephony.sandbox import CalleeScript
from services.telephony.trunks import prepare_dial


@pytest.mark.parametrize("value, seconds", [
    ("2s", 2.0), ("500ms", 0.5), ("1.5", 1.5), (" 1.5 s ", 1.5), ("0", 0.0), ("1m", 60.0), (".25s", 0.25),
    (3, 3.0), (0.2, 0.2), ("20S", 20.0), ("1500MS", 1.5),
])
def test_parse_duration(value, seconds):
    assert trunks.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "s", "-1s", "2 h", "1e3", "abc", "2ss", None, True, -1, 3601, "2h",
                                   float("nan"), "inf"])
def test_parse_duration_refuses(value):
    with pytest.raises(TrunkError) as e:
        trunks.parse_duration(value, "ring")
    assert e.value.field == "ring" and e.value.code == "invalid_ring"


@pytest.mark.parametrize("host, normal", [
    ("sip.example.net", "sip.example.net"), ("SIP.Example.NET.", "sip.example.net"), ("127.0.0.1", "127.0.0.1"),
    ("[::1]", "::1"), ("2001:db8::1", "2001:db8::1"), ("pbx", "pbx"), (" pbx-1.lan ", "pbx-1.lan"),
])
def test_valid_host(host, normal):
    assert trunks.valid_host(host) == normal


@pytest.mark.parametrize("host", ["", " ", None, 5, "a b", "host:5060", "sip:host", "-bad.example", "1.2.3",
                                  "999.1.1.1", "a" * 64 + ".com", "x\x00y", "http://h"])
def test_invalid_host(host):
    with pytest.raises(TrunkError) as e:
        trunks.valid_host(host)
    assert e.value.field == "host"


def test_port_and_transport():
    assert trunks.valid_port("5080") == 5080 and trunks.valid_port(1) == 1
    assert trunks.valid_port(None) is None  # no port: located by DNS (RFC 3263)
    for bad in (0, 65536, "x", True, "", 1.5, -1):
        with pytest.raises(TrunkError) as e:
            trunks.valid_port(bad)
        assert (e.value.code, e.value.field) == ("invalid_port", "port")
    assert [trunks.valid_transport(t) for t in ("UDP", "tcp", " TLS ")] == ["udp", "tcp", "tls"]
    for bad in ("ws", "", None, "sctp", "udp;x"):
        with pytest.raises(TrunkError) as e:
            trunks.valid_transport(bad)
        assert e.value.field == "transport"


def test_prefixes_and_caller_id():
    assert trunks.valid_prefixes(None) == []
    assert trunks.valid_prefixes(["+1555", "+44", "+1555"]) == ["+1555", "+44"]
    assert trunks.valid_prefixes("+1555, +44") == ["+1555", "+44"]
    for bad in (["1555"], ["+15a"], [5], "x", ["+" + "1" * 16], {"a": 1}):
        with pytest.raises(TrunkError) as e:
            trunks.valid_prefixes(bad)
        assert e.value.field == "allowed_from_prefixes"
    assert trunks.valid_caller_id("+1 (555) 987-6543") == "+15559876543"
    assert trunks.valid_caller_id("") is None
    with pytest.raises(TrunkError) as e:
        trunks.valid_caller_id("5559876543")
    assert e.value.field == "caller_id"


@pytest.mark.parametrize("from_, caller_id, prefixes, presented", [
    ("+15559876543", None, [], "+15559876543"),             # no rules: as requested
    ("+15559876543", "+15550000000", [], "+15550000000"),   # fixed caller id
    ("+15559876543", None, ["+1555"], "+15559876543"),      # allowed prefix
    ("+15559876543", "+15550000000", ["+1555"], "+15559876543"),  # allowed: the fallback is not used
    ("+442071234567", "+15550000000", ["+1555"], "+15550000000"),  # not allowed: fallback
    ("+15559876543", None, ["+44", "+1"], "+15559876543"),
])
def test_resolve_caller_id(from_, caller_id, prefixes, presented):
    assert trunks.resolve_caller_id(from_, caller_id, prefixes) == presented


def test_resolve_caller_id_refuses_without_fallback():
    with pytest.raises(TrunkError) as e:
        trunks.resolve_caller_id("+442071234567", None, ["+1555"])
    assert e.value.code == "caller_id_not_allowed" and "+442071234567" in e.value.message


def test_seal_roundtrip_and_tamper(monkeypatch):
    monkeypatch.setenv("CANARY_TRUNK_SECRET", "k1")
    blob = trunks.seal("s3cret-pässword")
    assert b"s3cret" not in blob and trunks.unseal(blob) == "s3cret-pässword"
    assert trunks.seal("same") != trunks.seal("same")  # fresh nonce every time
    tampered = bytearray(blob)
    tampered[25] ^= 1
    with pytest.raises(TrunkError, match="integrity"):
        trunks.unseal(bytes(tampered))
    monkeypatch.setenv("CANARY_TRUNK_SECRET", "k2")
    with pytest.raises(TrunkError, match="another CANARY_TRUNK_SECRET"):
        trunks.unseal(blob)
    with pytest.raises(TrunkError):
        trunks.unseal(b"\x01short")
    assert trunks.unseal(trunks.seal("")) == ""


def test_trunk_config_repr_hides_password():
    t = TrunkConfig("h", username="u", password="topsecret")
    assert "topsecret" not in repr(t) and "topsecret" not in str(DialRequest("c", "+1", "+2", trunk=t))


class FakeDb:
    """fetchrow for trunk_config: one sealed row or nothing."""

    def __init__(self, row):
        self.row = row

    async def fetchrow(self, sql, *args):
        return self.row


def _row(**kw):
    row = {"host": "10.0.0.1", "port": 5070, "transport": "udp", "username": "acme",
           "password_sealed": trunks.seal("pw"), "caller_id": None, "allowed_from_prefixes": []}
    row.update(kw)
    return row


def test_prepare_dial_applies_trunk_and_rules(monkeypatch):
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")  # a LAN trunk (the guard: tests/security)
    req = DialRequest("call_1", "+15551234567", "+15559876543", account_id="acct_1")
    out = asyncio.run(prepare_dial(FakeDb(_row(caller_id="+15550000000")), req))
    assert out.trunk == TrunkConfig("10.0.0.1", 5070, "udp", "acme", "pw", None)
    assert out.from_ == "+15550000000" and out.to == req.to and out.account_id == "acct_1"
    out = asyncio.run(prepare_dial(FakeDb(_row(allowed_from_prefixes=["+1555"])), req))
    assert out.from_ == "+15559876543"
    with pytest.raises(TrunkError, match="not allowed"):
        asyncio.run(prepare_dial(FakeDb(_row(allowed_from_prefixes=["+44"])), req))
    with pytest.raises(TrunkError) as e:
        asyncio.run(prepare_dial(FakeDb(None), req))
    assert e.value.message == trunks.NO_TRUNK == "no SIP trunk configured for this account"
    out = asyncio.run(prepare_dial(FakeDb(_row(password_sealed=None, username=None)), req))
    assert out.trunk.password is None


def test_callee_script_matches_sandbox_dataclass():
    s = trunks.callee_script(ring="500ms", after="2s", press="1234#", say="yes please", hangup_after="20s")
    assert s == {"ring": 0.5, "answer": True, "after": 2.0, "press": "1234#", "say": "yes please",
                 "hangup_after": 20.0}
    cs = CalleeScript.from_dict(s)
    assert (cs.ring, cs.after, cs.press, cs.say, cs.hangup_after) == (0.5, 2.0, "1234#", "yes please", 20.0)
    assert cs.say_voice == CalleeScript().say_voice  # default voice when none given
    assert trunks.callee_script(answer=False)["answer"] is False
    assert trunks.callee_script(say_voice="en_US-lessac-medium")["say_voice"] == "en_US-lessac-medium"
    assert trunks.callee_script(press="12ab")["press"] == "12AB"


@pytest.mark.parametrize("kw, field", [
    ({"press": "12x"}, "press"), ({"press": "1" * 65}, "press"), ({"ring": "soon"}, "ring"),
    ({"after": -1}, "after"), ({"hangup_after": "2h"}, "hangup_after"), ({"answer": "yes"}, "answer"),
    ({"say": "x" * 1001}, "say"), ({"say_voice": "a b"}, "say_voice"), ({"say": 5}, "say"),
])
def test_callee_script_refuses(kw, field):
    with pytest.raises(TrunkError) as e:
        trunks.callee_script(**kw)
    assert e.value.field == field


def test_callee_number():
    assert trunks.valid_callee_number("+1 555 777 0001") == "+15557770001"
    with pytest.raises(TrunkError) as e:
        trunks.valid_callee_number("+15005550001")
    assert e.value.code == "magic_number"
    with pytest.raises(TrunkError) as e:
        trunks.valid_callee_number("15557770001")
    assert e.value.code == "invalid_phone_number"


def test_default_port_follows_the_transport():
    assert [trunks.default_port(t) for t in ("udp", "tcp", "tls", "TLS", None)] == [5060, 5060, 5061, 5061, 5060]
