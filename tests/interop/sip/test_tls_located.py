"""A TLS trunk named by its domain and located by SRV (dnsmasq): baresip's certificate must
name the trunk's domain, never just the SRV target (RFC 5922), and the call goes to the target."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from services.telephony.carrier import Answered, DialRequest, Ended, TrunkConfig
from services.telephony.trunks import trunk_targets
from tests.dnsmasq import dnsmasq  # noqa: F401 (fixture)

from .baresip import start_baresip

pytestmark = pytest.mark.interop


async def located_call(carrier, dnsmasq, tmp_path, cert_names: tuple[str, ...]):
    peer = start_baresip(tmp_path, "tls", cert_names=cert_names)
    dnsmasq.start(srv=[("_sips._tcp.secure.test", "sbc.secure.test", peer.trunk.port, 10, 0)],
                  hosts=[("sbc.secure.test", "127.0.0.1")])
    trunk = TrunkConfig("secure.test", None, "tls")
    targets = await trunk_targets(trunk)
    assert [(t.name, t.port) for t in targets] == [("sbc.secure.test", peer.trunk.port)]
    carrier.tls_ca_file = peer.ca_file
    call = await carrier.dial(DialRequest("tls-srv", "1000", "+15550199", timeout_s=30, trunk=dataclasses.replace(
        trunk, address=targets[0].address, targets=tuple(targets))))
    return peer, call


async def test_the_certificate_of_the_domain_is_accepted_at_the_srv_target(carrier, dnsmasq, tmp_path, monkeypatch):
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")  # the target is on loopback
    peer, call = await located_call(carrier, dnsmasq, tmp_path, ("secure.test",))
    try:
        ev = None
        while not isinstance(ev, (Answered, Ended)):
            ev = await asyncio.wait_for(call.events.get(), 35)
        assert isinstance(ev, Answered), (ev, peer.log()[-2000:])
        await call.hangup()
        assert (await asyncio.wait_for(call.events.get(), 5)).status == "completed"
    finally:
        peer.stop()


async def test_a_certificate_naming_only_the_srv_target_is_refused(carrier, dnsmasq, tmp_path, monkeypatch):
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")
    peer, call = await located_call(carrier, dnsmasq, tmp_path, ("sbc.secure.test",))
    try:
        ev = await asyncio.wait_for(call.events.get(), 10)
        assert isinstance(ev, Ended) and ev.status == "failed", ev
        assert "CERTIFICATE_VERIFY_FAILED" in ev.reason or "match" in ev.reason, ev.reason
    finally:
        peer.stop()
