"""Two inbound gateways share the telephony consumer group (one partition each): an incoming
SIP call is answered by the gateway that holds its INVITE, whichever it is. Each gateway names
its incoming calls for a partition it consumes, so the orchestrator's answer instruction
(dial.requested, keyed by the call id) comes back to it. Real processes, real broker, SIPp as
the caller of each gateway."""

from __future__ import annotations

import asyncio

import pytest

from services.common.kafka import partition_of
from services.lib import trunks
from tests.conftest import spawn
from tests.e2e.conftest import CORE, _voice_stack
from tests.e2e.test_sip_inbound import projected, received, routed_number
from tests.interop.sip.conftest import free_udp_port, sipp  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

HOLD = {"start": "hold", "steps": {"hold": {"kind": "pause", "seconds": 30}}}  # the caller hangs up first
GW2 = "services.telephony.gateway#2"


async def telephony_members(prefix: str) -> list[dict]:
    from aiokafka.admin import AIOKafkaAdminClient

    from services.common.config import settings

    admin = AIOKafkaAdminClient(bootstrap_servers=settings().kafka_bootstrap)
    await admin.start()
    try:
        groups = [g for r in await admin.describe_consumer_groups([prefix + "telephony"]) for g in r.to_object()["groups"]]
    finally:
        await admin.close()
    g = groups[0] if groups else {"state": "", "members": []}
    return g["members"] if g["state"] == "Stable" and all(m["member_assignment"] for m in g["members"]) else []


@pytest.fixture(scope="module")
async def voice(request, stack, tmp_path_factory):
    ports = [free_udp_port(), free_udp_port()]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CANARY_SIP_INBOUND", "1")
        mp.setenv("CANARY_SIP_PORT", str(ports[0]))
        mp.setenv("CANARY_SIP_BIND", "127.0.0.1")
        mp.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")
        mp.setenv("CANARY_SIP_INBOUND_REFRESH_S", "0")  # numbers routed mid-test are found at once
        async for vs in _voice_stack(request, stack, tmp_path_factory, CORE):
            await trunks.set_trunk(vs.db, vs.account, host="127.0.0.1", port=5090, password=None)
            vs.procs[GW2] = spawn("services.telephony.gateway", {**vs.env, "CANARY_SIP_PORT": str(ports[1])},
                                  vs.logdir / "gateway2.log")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120
            while len(await telephony_members(vs.prefix)) != 2:
                assert loop.time() < deadline, "the second gateway did not join the telephony group"
                await asyncio.sleep(0.5)
            vs.sip_addrs = [f"127.0.0.1:{p}" for p in ports]
            yield vs


async def test_each_gateway_answers_the_calls_it_holds(voice, sipp, tmp_path):
    numbers = [await routed_number(voice, HOLD) for _ in range(4)]
    calls = []
    for k, number in enumerate(numbers):  # two calls to each gateway, at once
        addr = voice.sip_addrs[k // 2]
        calls.append((addr, number, sipp("uac_hold.xml", call=(addr, number))))
    ids = [await received(voice, number) for _, number, _ in calls]
    for (addr, number, uac), cid in zip(calls, ids):
        end = await voice.wait(cid, "terminal", timeout=90)
        assert uac.wait(60) == 0, (addr, uac.errors())
        assert end.type == "call.completed" and end.data["hangup_by"] == "caller", (addr, voice.types(cid))
        assert "call.answered" in voice.types(cid), (addr, voice.types(cid))
        row = await projected(voice, cid, "completed")
        assert row["direction"] == "inbound"
    # The two gateways named their calls for their own partitions: one each (2 partitions).
    parts = [partition_of(cid.encode(), 2) for cid in ids]
    assert parts[0] == parts[1] and parts[2] == parts[3] and parts[0] != parts[2], parts


DESK = "+15557770030"  # a sandbox callee: answers, speaks, hangs up
DIAL = {"start": "desk", "steps": {"desk": {"kind": "dial", "to": DESK, "timeout": 10}}}


async def test_a_dial_step_s_second_call_is_placed_by_its_parent_s_gateway(voice, kprod):
    """Two gateways, one partition each: the orchestrator names each dial step's second call on
    its parent's partition, so the gateway holding the parent places it and relays between them
    (with any id, half of them would fail: "not on this telephony gateway")."""
    await voice.db.execute(
        "INSERT INTO sandbox_callees (number, account_id, script) VALUES ($1, $2, $3::jsonb)"
        " ON CONFLICT DO NOTHING", DESK, voice.account, '{"ring": 0.5, "say": "Desk here.", "hangup_after": 2}')
    parents: list[str] = []
    while len(parents) < 12 and (len(parents) < 4 or len({partition_of(p.encode(), 2) for p in parents}) < 2):
        parents.append(await voice.place(kprod, tts=None, flow=DIAL))
    assert len({partition_of(p.encode(), 2) for p in parents}) == 2  # both gateways hold parents
    for parent in parents:
        ended = await voice.wait(parent, "dial.ended", timeout=90)
        child = ended.data["child_call_id"]
        assert ended.data["outcome"] == "completed", (ended.data, voice.types(child))
        assert partition_of(child.encode(), 2) == partition_of(parent.encode(), 2)
        assert "call.answered" in voice.types(child)
