"""Whole SIP calls whose trunk is only a domain name (no port): the gateway locates SIPp by
DNS (dnsmasq's SRV and A records, RFC 3263) and fails over along the SRV priorities when the
first server refuses the connection or answers 503."""

from __future__ import annotations

import pytest

from services.lib import trunks
from tests.dnsmasq import Dnsmasq
from tests.e2e.conftest import CORE, sip_voice_stack
from tests.interop.sip.conftest import SCENARIOS, free_tcp_port, rtp_listener, sipp  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory):
    server = Dnsmasq(tmp_path_factory.mktemp("dns"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def voice(request, stack, tmp_path_factory, dns_server):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CANARY_DNS_NAMESERVERS", dns_server.nameserver)  # the gateway's resolver asks dnsmasq
        async for vs in sip_voice_stack(request, stack, tmp_path_factory, CORE):
            yield vs


async def test_a_trunk_named_by_its_domain_reaches_sipp_through_srv(voice, kprod, sipp, dns_server, rtp_listener):
    uas = sipp("uas_answer.xml", sets={"rtp_port": str(rtp_listener.port)})
    dns_server.start(srv=[("_sip._udp.answer.test", "sbc.answer.test", uas.port, 10, 0)],
                     hosts=[("sbc.answer.test", "127.0.0.1")])
    view = await trunks.set_trunk(voice.db, voice.account, host="answer.test", password=None)
    assert view["port"] is None
    cid = await voice.place(kprod, carrier="sip", tts={"text": "Located by DNS."})
    end = await voice.wait(cid, "terminal", timeout=60)
    assert end.type == "call.completed", end.data
    assert uas.wait() == 0, uas.errors()


async def test_tcp_failover_from_a_refused_server_to_the_next_priority(voice, kprod, sipp, dns_server, rtp_listener):
    uas = sipp("uas_answer.xml", transport="tcp", sets={"rtp_port": str(rtp_listener.port)})
    closed = free_tcp_port()  # nobody listens: the connection is refused
    dns_server.start(srv=[("_sip._tcp.fo.test", "down.fo.test", closed, 10, 0),
                          ("_sip._tcp.fo.test", "up.fo.test", uas.port, 20, 0)],
                     hosts=[("down.fo.test", "127.0.0.1"), ("up.fo.test", "127.0.0.1")])
    await trunks.set_trunk(voice.db, voice.account, host="fo.test", transport="tcp", password=None)
    cid = await voice.place(kprod, carrier="sip", tts={"text": "Second server."})
    end = await voice.wait(cid, "terminal", timeout=60)
    assert end.type == "call.completed", end.data
    assert uas.wait() == 0, uas.errors()
    reason = end.data["reason"]
    assert f"at up.fo.test (127.0.0.1:{uas.port})" in reason and f"down.fo.test (127.0.0.1:{closed})" in reason


async def test_udp_failover_from_a_503_to_the_next_priority(voice, kprod, sipp, dns_server, rtp_listener, tmp_path):
    unavailable = tmp_path / "uas_503.xml"
    unavailable.write_text((SCENARIOS / "uas_busy.xml").read_text().replace("486 Busy Here", "503 Service Unavailable"))
    first, second = sipp(str(unavailable)), sipp("uas_answer.xml", sets={"rtp_port": str(rtp_listener.port)})
    dns_server.start(srv=[("_sip._udp.busy503.test", "one.busy503.test", first.port, 10, 0),
                          ("_sip._udp.busy503.test", "two.busy503.test", second.port, 20, 0)],
                     hosts=[("one.busy503.test", "127.0.0.1"), ("two.busy503.test", "127.0.0.1")])
    await trunks.set_trunk(voice.db, voice.account, host="busy503.test", password=None)
    cid = await voice.place(kprod, carrier="sip", tts={"text": "After a 503."})
    end = await voice.wait(cid, "terminal", timeout=60)
    assert end.type == "call.completed", end.data
    assert first.wait() == 0, first.errors()
    assert second.wait() == 0, second.errors()
    assert "503 Service Unavailable" in end.data["reason"]


async def test_a_domain_dns_does_not_know_fails_the_call_with_the_reason(voice, kprod, dns_server):
    dns_server.start()
    await trunks.set_trunk(voice.db, voice.account, host="nowhere.test", password=None)
    cid = await voice.place(kprod, carrier="sip")
    end = await voice.wait(cid, "terminal", timeout=30)
    assert end.type == "call.failed"
    assert end.data["reason"] == "SIP trunk host nowhere.test does not exist in DNS (NXDOMAIN)"
