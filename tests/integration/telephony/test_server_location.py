"""RFC 3263 server location of SIP trunks against a real DNS server (dnsmasq): NAPTR, SRV and
A records as a zone would carry them, the SSRF rules on every address found, and the reason
a call fails with when DNS has no answer."""

from __future__ import annotations

import socket
import time
import uuid

import pytest

from services.common import db
from services.lib import trunks
from services.lib.trunks import TrunkError
from services.telephony.carrier import DialRequest, TrunkConfig
from services.telephony.sip.locate import LocateError, locate
from services.telephony.trunks import prepare_dial, trunk_targets
from tests.dnsmasq import dnsmasq  # noqa: F401 (fixture)

# Public addresses (the documentation ranges are not, to the SSRF rules); nothing is sent to them.
PUBLIC1, PUBLIC2, PUBLIC3 = "9.9.9.9", "1.0.0.1", "8.8.4.4"


@pytest.fixture(autouse=True)
def _public_only(monkeypatch):
    """The rules outside development (a test that needs loopback answers allows them)."""
    monkeypatch.delenv("CANARY_ALLOW_PRIVATE_URLS", raising=False)


def where(targets) -> list[tuple[str, int]]:
    return [(t.address, t.port) for t in targets]


async def test_naptr_names_the_srv_record_of_the_trunks_transport(dnsmasq, monkeypatch):
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")  # 127.0.0.x answers: judged in the next tests
    dnsmasq.start(
        naptr=[("carrier.test", 10, 10, "s", "SIP+D2U", "_sip._udp.edge.carrier.test"),
               ("carrier.test", 20, 10, "s", "SIP+D2T", "_sip._tcp.carrier.test")],
        srv=[("_sip._udp.edge.carrier.test", "udp1.carrier.test", 5071, 10, 0),
             ("_sip._udp.carrier.test", "wrong.carrier.test", 5099, 10, 0),  # NAPTR named another one
             ("_sip._tcp.carrier.test", "tcp1.carrier.test", 5072, 10, 0),
             ("_sips._tcp.carrier.test", "tls1.carrier.test", 5073, 10, 0)],  # no NAPTR: the standard name
        hosts=[("udp1.carrier.test", "127.0.0.21"), ("tcp1.carrier.test", "127.0.0.22"),
               ("tls1.carrier.test", "127.0.0.23"), ("wrong.carrier.test", "127.0.0.99")])
    assert where(await locate("carrier.test", "udp")) == [("127.0.0.21", 5071)]
    assert where(await locate("carrier.test", "tcp")) == [("127.0.0.22", 5072)]
    [tls] = await locate("carrier.test", "tls")
    assert (tls.address, tls.port, tls.name) == ("127.0.0.23", 5073, "tls1.carrier.test")


async def test_srv_priorities_give_the_failover_order(dnsmasq, monkeypatch):
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")
    dnsmasq.start(srv=[("_sip._tcp.prio.test", "backup.prio.test", 5082, 20, 0),
                       ("_sip._tcp.prio.test", "last.prio.test", 5083, 30, 0),
                       ("_sip._tcp.prio.test", "main.prio.test", 5081, 10, 0)],
                  hosts=[("main.prio.test", "127.0.0.31"), ("backup.prio.test", "127.0.0.32"),
                         ("last.prio.test", "127.0.0.33")])
    for _ in range(5):
        assert where(await locate("prio.test", "tcp")) == [("127.0.0.31", 5081), ("127.0.0.32", 5082),
                                                          ("127.0.0.33", 5083)]


async def test_without_naptr_or_srv_the_hosts_address_and_the_default_port(dnsmasq):
    dnsmasq.start(hosts=[("plain.test", PUBLIC1)])
    assert where(await locate("plain.test", "udp")) == [(PUBLIC1, 5060)]
    assert where(await locate("plain.test", "tls")) == [(PUBLIC1, 5061)]
    # a port given, or an IP address: as before, no NAPTR/SRV asked
    asked = dnsmasq.queries()
    assert where(await trunk_targets(TrunkConfig(PUBLIC2, None, "tls"))) == [(PUBLIC2, 5061)]
    assert where(await trunk_targets(TrunkConfig(PUBLIC2, 5099, "udp"))) == [(PUBLIC2, 5099)]
    assert dnsmasq.queries() == asked


async def test_an_srv_target_at_a_private_address_is_refused_outside_development(dnsmasq, monkeypatch):
    dnsmasq.start(srv=[("_sip._udp.pivot.test", "edge.pivot.test", 5060, 10, 0),
                       ("_sip._udp.pivot.test", "inside.pivot.test", 5060, 20, 0)],
                  hosts=[("edge.pivot.test", PUBLIC1), ("inside.pivot.test", "10.0.0.5")])
    with pytest.raises(TrunkError) as e:
        await trunk_targets(TrunkConfig("pivot.test", None, "udp"))
    assert (e.value.code, e.value.field) == ("host_not_allowed", "host")
    assert "inside.pivot.test resolves to a non-public address (10.0.0.5)" in e.value.message
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")  # development
    assert where(await locate("pivot.test", "udp")) == [(PUBLIC1, 5060), ("10.0.0.5", 5060)]


async def test_a_private_fallback_address_is_refused_too(dnsmasq):
    dnsmasq.start(hosts=[("loop.test", "127.0.0.1")])
    with pytest.raises(LocateError) as e:
        await locate("loop.test", "udp")
    assert e.value.code == "host_not_allowed" and "127.0.0.1" in e.value.message


async def test_nxdomain_and_no_records_say_so(dnsmasq):
    dnsmasq.start(srv=[("_sip._udp.gone.test", ".", 0, 0, 0)], hosts=[("other.test", PUBLIC1)])
    with pytest.raises(LocateError) as e:
        await locate("missing.test", "udp")
    assert (e.value.code, e.value.message) == ("host_not_found",
                                               "SIP trunk host missing.test does not exist in DNS (NXDOMAIN)")
    with pytest.raises(LocateError) as e:
        await locate("gone.test", "udp")  # SRV target "." (RFC 2782): decidedly not available
    assert e.value.code == "host_not_found" and "no such service" in e.value.message


async def test_a_silent_dns_server_times_out_within_the_setting(monkeypatch):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        monkeypatch.setenv("CANARY_DNS_NAMESERVERS", f"127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("CANARY_DNS_TIMEOUT_S", "0.5")
        t0 = time.monotonic()
        with pytest.raises(LocateError) as e:
            await locate("slow.test", "udp")
        assert time.monotonic() - t0 < 1.5
    assert e.value.code == "dns_failed" and "slow.test" in e.value.message and "timed out" in e.value.message


async def test_answers_are_cached_for_their_ttl(dnsmasq):
    dnsmasq.start(srv=[("_sip._udp.cache.test", "a.cache.test", 5090, 10, 0)],
                  hosts=[("a.cache.test", PUBLIC3)], ttl=60)
    before = dnsmasq.queries()  # its readiness probe
    t0 = time.perf_counter()
    first = await locate("cache.test", "udp")
    uncached = time.perf_counter() - t0
    asked = dnsmasq.queries()
    t0 = time.perf_counter()
    for _ in range(100):
        assert await locate("cache.test", "udp") == first
    cached = (time.perf_counter() - t0) / 100
    assert dnsmasq.queries() == asked  # no query while the TTL lasts
    assert cached < uncached
    print(f"\nserver location: uncached {uncached * 1000:.2f} ms ({asked - before} queries), cached {cached * 1000:.3f} ms")


async def test_a_call_through_a_name_nobody_has_fails_with_the_dns_reason(stack, dnsmasq):
    dnsmasq.start(hosts=[("other.test", PUBLIC1)])
    pool = await db.create_pool(min_size=1, max_size=2)
    acct = "acct_" + uuid.uuid4().hex[:10]
    try:
        await pool.execute("INSERT INTO accounts (id, name, signing_secret) VALUES ($1, $1, 'whsec_test')", acct)
        view = await trunks.set_trunk(pool, acct, host="nobody.test", password=None)
        assert view["port"] is None
        req = DialRequest(call_id="call_x", to="+15550100", from_="+15550199", account_id=acct)
        with pytest.raises(TrunkError) as e:
            await prepare_dial(pool, req)
        assert str(e.value) == "SIP trunk host nobody.test does not exist in DNS (NXDOMAIN)"  # call.failed's reason
    finally:
        await pool.execute("DELETE FROM accounts WHERE id = $1", acct)
        await pool.close()


async def test_incoming_invites_are_taken_from_the_servers_dns_locates(stack, dnsmasq):
    from services.telephony.inbound import DirectoryCache

    dnsmasq.start(srv=[("_sip._udp.inbound.test", "edge.inbound.test", 5060, 10, 0)],
                  hosts=[("edge.inbound.test", PUBLIC2), ("inbound.test", PUBLIC3)])
    pool = await db.create_pool(min_size=1, max_size=2)
    acct = "acct_" + uuid.uuid4().hex[:10]
    try:
        await pool.execute("INSERT INTO accounts (id, name, signing_secret) VALUES ($1, $1, 'whsec_test')", acct)
        await trunks.set_trunk(pool, acct, host="inbound.test", password=None)
        cache = DirectoryCache(pool, refresh_s=60.0)
        # 404: the source is the trunk's (the number is not routed); 403: not a trunk's address
        assert (await cache.route(PUBLIC2, "+15557770009")).code == 404  # its SRV target
        assert (await cache.route(PUBLIC3, "+15557770009")).code == 403  # the domain's A: not a server
    finally:
        await pool.execute("DELETE FROM accounts WHERE id = $1", acct)
        await pool.close()
