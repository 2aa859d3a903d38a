"""Incoming SIP calls on the real stack: SIPp is the caller (a UAC), the gateway the UAS of
the account's trunk; orchestrator, gateway, TTS and projector as processes, a stored flow
on the number. Asserted: what SIPp saw (its scenario passes only with the expected SIP
responses), the events on the topic, the projected row in Postgres."""

from __future__ import annotations

import random

import pytest

from services.lib import inbound, trunks
from services.lib.flows import store as flows
from tests.e2e.conftest import CORE, _voice_stack
from tests.interop.sip.conftest import SCENARIOS, free_udp_port, sipp, write_dtmf_pcap  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

MENU = {"start": "menu", "steps": {
    "menu": {"kind": "gather", "prompt": {"kind": "say", "text": "Press one for sales."}, "num_digits": 1, "finish_on_key": "", "timeout": 20,
             "branches": {"1": "sales"}, "default": "bye"},
    "sales": {"kind": "pause", "seconds": 30},  # the caller hangs up meanwhile
    "bye": {"kind": "hangup"}}}


@pytest.fixture(scope="module")
async def voice(request, stack, tmp_path_factory):
    from tests.interop.sip.baresip import free_sip_port, self_signed

    port = free_sip_port()  # UDP and TCP on it, TLS on the next: all free
    ours = tmp_path_factory.mktemp("gateway-tls")
    cert, ca = self_signed(ours)  # our TLS listener's certificate, for 127.0.0.1
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CANARY_SIP_TLS_CERT", cert)
        mp.setenv("CANARY_SIP_INBOUND", "1")
        mp.setenv("CANARY_SIP_PORT", str(port))  # known, so SIPp can call it
        mp.setenv("CANARY_SIP_BIND", "127.0.0.1")
        mp.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")
        async for vs in _voice_stack(request, stack, tmp_path_factory, CORE):
            vs.sip_addr = f"127.0.0.1:{port}"
            vs.sip_tls_addr, vs.sip_tls_ca = f"127.0.0.1:{port + 1}", ca
            # The trunk's address is the source of its INVITEs (SIPp on loopback).
            await trunks.set_trunk(vs.db, vs.account, host="127.0.0.1", port=5090, password=None)
            yield vs


async def routed_number(voice, flow: dict | None = MENU) -> str:
    number = f"+1555{random.randrange(10**6, 10**7)}"
    await voice.db.execute("INSERT INTO numbers (account_id, number) VALUES ($1, $2)", voice.account, number)
    if flow is not None:
        created = await flows.create(voice.db, voice.account, flow)
        await inbound.set_route(voice.db, voice.account, number, inbound.check_changes({"flow_id": created["id"]}))
    return number


async def received(voice, number: str, timeout: float = 60.0) -> str:
    """The id of the call that came in to `number` (its call.received on the topic)."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for cid, evs in list(voice.events.items()):
            if any(e.type == "call.received" and e.data.get("to") == number for e in evs):
                return cid
        await asyncio.sleep(0.2)
    raise AssertionError(f"no call.received for {number}")


async def projected(voice, call_id: str, status: str, timeout: float = 60.0):
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    row = None
    while asyncio.get_running_loop().time() < deadline:
        row = await voice.db.fetchrow(f"SELECT * FROM {voice.schema}.calls WHERE id = $1", call_id)
        if row is not None and row["status"] == status:
            return row
        await asyncio.sleep(0.3)
    raise AssertionError(f"{call_id}: projected row {dict(row) if row else None}, not {status}")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_caller_presses_1_in_the_numbers_flow_then_hangs_up(voice, sipp, tmp_path, transport):
    """Over UDP, and over TCP (SIPp opens one connection to our listener on the SIP port; the
    whole call's SIP, our responses and BYE included, stays on it)."""
    number = await routed_number(voice)
    write_dtmf_pcap(tmp_path / "dtmf.pcap", "1")
    scenario = tmp_path / "uac_inbound.xml"
    scenario.write_text((SCENARIOS / "uac_inbound.xml").read_text())
    uac = sipp(str(scenario), call=(voice.sip_addr, number), transport=transport)
    cid = await received(voice, number)
    end = await voice.wait(cid, "terminal", timeout=90)
    assert uac.wait(60) == 0, uac.errors()  # 100/180/200 with PCMA + telephone-event, our 200 to its BYE
    assert end.type == "call.completed" and end.data["hangup_by"] == "caller", voice.types(cid)
    queued = await voice.wait(cid, "call.queued")
    assert queued.data["direction"] == "inbound" and queued.data["to"] == number
    assert queued.data["from"] == "+15551230001"
    types = voice.types(cid)
    assert "gather.completed" in types, " ".join(types)
    assert types.index("call.ringing") < types.index("call.answered") < types.index("gather.completed")
    gather = await voice.wait(cid, "gather.completed")
    assert gather.data["digits"] == "1"
    assert (await voice.wait(cid, "dtmf.received")).data["method"] == "rfc4733"
    steps = [e.data["step"] for e in voice.events[cid] if e.type == "flow.step.entered"]
    assert steps == ["menu", "sales"], " ".join(f"{e.type}@{e.occurred_at[14:23]}:{e.data}" for e in voice.events[cid][-4:])
    row = await projected(voice, cid, "completed")
    assert row["direction"] == "inbound" and row["hangup_by"] == "caller" and row["to_number"] == number


async def test_cancel_before_the_answer_ends_the_call_canceled(voice, sipp):
    number = await routed_number(voice)
    uac = sipp("uac_cancel.xml", call=(voice.sip_addr, number))
    assert uac.wait(60) == 0, uac.errors()  # 200 to its CANCEL, 487 to its INVITE
    cid = await received(voice, number)
    end = await voice.wait(cid, "terminal", timeout=90)
    assert end.type == "call.canceled" and end.data["hangup_by"] == "caller", voice.types(cid)
    assert "call.answered" not in voice.types(cid)
    row = await projected(voice, cid, "canceled")
    assert row["direction"] == "inbound"


async def test_a_number_without_a_route_is_404_and_no_call_exists(voice, sipp):
    number = await routed_number(voice, flow=None)  # the account's caller id, answering nothing
    uac = sipp("uac_refused.xml", call=(voice.sip_addr, number))
    assert uac.wait(60) == 0, uac.errors()
    unknown = sipp("uac_refused.xml", call=(voice.sip_addr, "+15550000000"))
    assert unknown.wait(60) == 0, unknown.errors()
    assert not any(e.type == "call.received" and e.data.get("to") in (number, "+15550000000")
                   for evs in voice.events.values() for e in evs)


async def test_an_invite_from_an_address_no_trunk_has_is_403(voice, sipp, tmp_path):
    number = await routed_number(voice)
    scenario = tmp_path / "uac_forbidden.xml"
    scenario.write_text((SCENARIOS / "uac_refused.xml").read_text().replace('response="404"', 'response="403"'))
    uac = sipp(str(scenario), call=(voice.sip_addr, number), ip="127.0.0.2")  # loopback, but no trunk's
    assert uac.wait(60) == 0, uac.errors()
    assert not any(e.type == "call.received" and e.data.get("to") == number
                   for evs in voice.events.values() for e in evs)


async def test_a_sandbox_caller_presses_1_through_the_same_flow(voice, kprod):
    from events import topics  # noqa: F401 - the stack's prefix is the VoiceStack's
    from services.common.kafka import publish

    number = await routed_number(voice)
    script = trunks.callee_script(ring=0.2, after=1.0, press="1", hangup_after=8.0)
    env = await inbound.sandbox_call(voice.db, voice.account, number, "+15551230009", script)
    await publish(kprod, voice.prefix + "voice.call.events", env)
    end = await voice.wait(env.call_id, "terminal", timeout=90)
    assert end.type == "call.completed" and end.data["hangup_by"] == "caller", voice.types(env.call_id)
    assert (await voice.wait(env.call_id, "gather.completed")).data["digits"] == "1"
    assert (await voice.wait(env.call_id, "call.queued")).data["direction"] == "inbound"
    row = await projected(voice, env.call_id, "completed")
    assert row["direction"] == "inbound" and row["from_number"] == "+15551230009"


async def test_baresip_calls_in_and_hears_the_numbers_flow(voice, tmp_path):
    """baresip (a real softphone) dials the routed number; the gateway answers, the stored flow
    speaks and hangs up. baresip must have heard speech (its player writes what it received)."""
    await _baresip_hears_the_flow(voice, tmp_path)


async def test_baresip_calls_in_over_tls_and_hears_the_numbers_flow(voice, tmp_path):
    """baresip opens TLS to our own listener (SIP port + 1, CANARY_SIP_TLS_CERT), verifying our
    certificate against the CA it is given, and the call runs as over UDP."""
    await _baresip_hears_the_flow(voice, tmp_path, transport="tls")


async def test_baresip_calls_in_with_srtp_on_a_trunk_that_requires_it(voice, tmp_path):
    """The same call with the trunk's srtp required (over udp: development mode; incoming calls
    are taken over UDP only) and baresip offering SRTP only (mediaenc=srtp-mand): the stored
    mode reaches the gateway's routing, and baresip hears the flow through SRTP."""
    import asyncio

    await trunks.set_trunk(voice.db, voice.account, host="127.0.0.1", port=5090, password=None, srtp="required")
    await asyncio.sleep(1.1)  # past the directory's refresh interval: the next refusal reloads it
    try:
        await _baresip_hears_the_flow(voice, tmp_path, mediaenc="srtp-mand")
    finally:
        await trunks.set_trunk(voice.db, voice.account, host="127.0.0.1", port=5090, password=None)


async def _baresip_hears_the_flow(voice, tmp_path, mediaenc: str | None = None, transport: str = "udp") -> None:
    import wave

    import numpy as np

    from tests.interop.sip.baresip import start_baresip

    number = await routed_number(voice, {"start": "hi", "steps": {
        "hi": {"kind": "say", "text": "Welcome to Canary. This inbound call is answered by a flow.", "next": "bye"},
        "bye": {"kind": "hangup"}}})
    if transport == "tls":
        peer = start_baresip(tmp_path, transport="tls", trust=voice.sip_tls_ca, mediaenc=mediaenc,
                             commands=(f"/dial sip:{number}@{voice.sip_tls_addr};transport=tls",))
    else:
        peer = start_baresip(tmp_path, commands=(f"/dial sip:{number}@{voice.sip_addr}",), mediaenc=mediaenc)
    try:
        cid = await received(voice, number)
        end = await voice.wait(cid, "terminal", timeout=60)
        assert end.type == "call.completed", voice.types(cid)
        queued = await voice.wait(cid, "call.queued")
        assert queued.data["direction"] == "inbound" and queued.data["from"] == "1000"
        assert "prompt.finished" in voice.types(cid)
        await projected(voice, cid, "completed")
    finally:
        peer.stop()
    [heard] = peer.heard()
    with wave.open(str(heard)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float)
        rate = w.getframerate()
    frames = pcm[: len(pcm) // (rate // 50) * (rate // 50)].reshape(-1, rate // 50)
    loud = (np.sqrt((frames ** 2).mean(axis=1)) > 300).sum()
    assert loud >= 50, (loud, peer.log()[-2000:])  # at least a second of our prompt reached baresip
