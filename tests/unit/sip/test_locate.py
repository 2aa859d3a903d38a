"""RFC 3263 server location's pure parts (services/telephony/sip/locate.py): which NAPTR
records a transport follows and the RFC 2782 order of SRV records, on a seeded RNG."""

from __future__ import annotations

import random
from collections import Counter

from services.telephony.sip.locate import Naptr, Srv, Target, order_srv, srv_names

NAPTRS = [
    Naptr(20, 10, "s", "SIP+D2U", "_sip._udp.example.net"),
    Naptr(10, 10, "S", "SIP+D2T", "_sip._tcp.example.net"),
    Naptr(10, 5, "s", "SIP+D2T", "_sip._tcp.backup.example.net"),
    Naptr(5, 5, "s", "SIPS+D2T", "_sips._tcp.example.net"),
    Naptr(1, 1, "u", "SIP+D2T", "!^.*$!sip:x@example.net!"),  # not terminal-s: not followed
    Naptr(1, 1, "s", "SIP+D2S", "_sip._sctp.example.net"),  # a transport we do not speak
]


def test_naptr_names_only_the_trunks_transport_best_order_then_preference_first():
    assert srv_names(NAPTRS, "tcp") == ["_sip._tcp.backup.example.net", "_sip._tcp.example.net"]
    assert srv_names(NAPTRS, "udp") == ["_sip._udp.example.net"]
    assert srv_names(NAPTRS, "tls") == ["_sips._tcp.example.net"]
    assert srv_names([], "udp") == []  # no NAPTR: the caller asks the standard SRV name


def test_srv_priority_first_whatever_the_weights():
    recs = [Srv(20, 100, 5062, "c"), Srv(10, 0, 5060, "a"), Srv(30, 1, 5063, "d"), Srv(10, 0, 5061, "b")]
    for seed in range(50):
        got = order_srv(recs, random.Random(seed))
        assert [r.priority for r in got] == [10, 10, 20, 30]
        assert {r.target for r in got[:2]} == {"a", "b"}


def test_srv_weights_share_first_place_in_proportion():
    recs = [Srv(10, 90, 5060, "heavy"), Srv(10, 10, 5060, "light")]
    rng = random.Random(1234)
    firsts = Counter(order_srv(recs, rng)[0].target for _ in range(4000))
    assert 0.86 < firsts["heavy"] / 4000 < 0.94  # 90 % expected (RFC 2782's running sum)


def test_a_zero_weight_record_is_picked_rarely_but_can_be():
    recs = [Srv(10, 0, 5060, "zero"), Srv(10, 50, 5060, "fifty")]
    rng = random.Random(7)
    firsts = Counter(order_srv(recs, rng)[0].target for _ in range(5000))
    assert 0 < firsts["zero"] < 300  # 1/51 expected: pick 0 of 0..50


def test_same_seed_same_order_and_nothing_lost():
    recs = [Srv(10, w, 5060 + w, f"t{w}") for w in (1, 5, 10, 20, 0)]
    a, b = order_srv(recs, random.Random(99)), order_srv(recs, random.Random(99))
    assert a == b and sorted(a) == sorted(recs)
    assert order_srv([], random.Random(0)) == []


def test_target_names_the_server_and_its_address():
    assert str(Target("192.0.2.5", 5070, "sip1.example.net")) == "sip1.example.net (192.0.2.5:5070)"
    assert str(Target("2001:db8::5", 5061, "2001:db8::5")) == "[2001:db8::5]:5061"
