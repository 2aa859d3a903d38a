"""A whole voice stack per test module: orchestrator, gateway, TTS, projector (+ media)."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from events import Envelope, decode, new_envelope
from events.catalog import TERMINAL_EVENTS
from services.common.kafka import ensure_topics, make_consumer, publish
from tests.conftest import service_env, spawn

CORE = ["services.orchestrator.service", "services.telephony.gateway", "services.tts.worker",
        "services.projector.service", "services.webhooks"]
SPEECH = "services.transcription.speech_gather"  # recognises speech gathers (the gateway runs no whisper)


class VoiceStack:
    """Real services as processes on their own topics; place calls and watch their events."""

    def __init__(self, prefix: str, schema: str, logdir: Path, modules: list[str], speed: float,
                 env: dict[str, str] | None = None):
        self.prefix, self.schema, self.logdir = prefix, schema, logdir
        self.env = service_env(prefix, CANARY_PROJECTION_SCHEMA=schema, CANARY_SANDBOX_SPEED=str(speed),
                               CANARY_ALLOW_PRIVATE_URLS="1", **(env or {}))
        self.modules = modules
        self.procs: dict[str, object] = {}
        self.events: dict[str, list[Envelope]] = defaultdict(list)
        self.account = "acct_" + uuid.uuid4().hex[:10]
        self._changed = asyncio.Event()

    def start(self, module: str) -> None:
        self.procs[module] = spawn(module, self.env, self.logdir / f"{module}.log")

    def kill(self, module: str, sig=signal.SIGKILL) -> None:
        import os

        p = self.procs.pop(module)
        os.killpg(p.pid, sig)
        p.wait(timeout=30)

    async def _follow(self) -> None:
        c = make_consumer(self.prefix + "voice.call.events", group_id=None)
        await c.start()
        try:
            while True:
                batch = await c.getmany(timeout_ms=100)
                for msgs in batch.values():
                    for m in msgs:
                        env = decode(m.value)
                        if isinstance(env, Envelope):
                            self.events[env.call_id].append(env)
                if batch:
                    self._changed.set()
        finally:
            await c.stop()

    async def place(self, producer, to: str = "+15551234567", account: str | None = None, **opts) -> str:
        call_id = "call_" + uuid.uuid4().hex[:20]
        data = {"to": to, "from": "+15559876543", "tts": {"text": "Hello from Canary."}, "carrier": "sandbox",
                **opts}
        data = {k: v for k, v in data.items() if v is not None}
        await publish(producer, self.prefix + "voice.call.commands",
                      new_envelope("PlaceCall", call_id, account or self.account, data))
        return call_id

    async def hangup(self, producer, call_id: str) -> None:
        await publish(producer, self.prefix + "voice.call.commands",
                      new_envelope("HangupCall", call_id, self.account, {"reason": "api"}))

    def types(self, call_id: str) -> list[str]:
        return [e.type for e in self.events[call_id]]

    async def wait(self, call_id: str, type: str, timeout: float = 60.0) -> Envelope:
        """The first event of `type` (or any terminal event for type='terminal')."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for e in self.events[call_id]:
                if e.type == type or (type == "terminal" and e.type in TERMINAL_EVENTS):
                    return e
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"{call_id}: no {type} within {timeout}s; saw {self.types(call_id)}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass


async def _groups_joined(vs: VoiceStack, timeout: float = 120.0) -> None:
    """Until every service (one consumer group each) has joined its group and holds its
    partitions: the first call then meets services that are running, not starting."""
    from aiokafka.admin import AIOKafkaAdminClient

    from services.common.config import settings

    admin = AIOKafkaAdminClient(bootstrap_servers=settings().kafka_bootstrap)
    await admin.start()
    loop = asyncio.get_running_loop()
    deadline, groups = loop.time() + timeout, []
    try:
        while True:
            try:
                ids = [g[0] for g in await admin.list_consumer_groups() if g[0].startswith(vs.prefix)]
                groups = [g for i in ids for r in await admin.describe_consumer_groups([i])
                          for g in r.to_object()["groups"]]
            except Exception:  # noqa: BLE001 - a group mid-rebalance may not describe yet
                groups = []
            if len(groups) >= len(vs.modules) and all(
                    g["state"] == "Stable" and g["members"] and all(m["member_assignment"] for m in g["members"])
                    for g in groups):
                return
            if loop.time() > deadline:
                raise AssertionError(f"services not in their consumer groups within {timeout:g} s: "
                                     f"{[(g['group'], g['state']) for g in groups]} for {vs.modules}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def _warm_up(vs: VoiceStack, timeout: float = 120.0) -> None:
    """One throwaway call through the pipeline before the first test's call: it ends, its
    prompt is rendered and it is projected only once the orchestrator, gateway, TTS worker
    and projector are up and consuming (however long their start takes on this machine)."""
    from services.common.kafka import make_producer

    await _groups_joined(vs, timeout)
    producer = make_producer()
    await producer.start()
    try:
        cid = await vs.place(producer, to="+15005550004")  # answers, then hangs up at once
        await vs.wait(cid, "tts.rendered", timeout=timeout)
        end = await vs.wait(cid, "terminal", timeout=timeout)
        assert end.type == "call.completed", vs.types(cid)
    finally:
        await producer.stop()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            if await vs.db.fetchval(f"SELECT status FROM {vs.schema}.calls WHERE id = $1", cid) == "completed":
                return
        except Exception:  # the projector creates its schema when it starts
            pass
        if loop.time() > deadline:
            raise AssertionError(f"warm-up call {cid} not projected within {timeout:g} s")
        await asyncio.sleep(0.1)


async def sip_voice_stack(request, stack, tmp_path_factory, modules=None):
    """`_voice_stack` with the SIP carrier: its socket on a free loopback port, and trunks (SIPp,
    baresip) and apps on loopback allowed."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CANARY_SIP_PORT", "0")
        mp.setenv("CANARY_SIP_BIND", "127.0.0.1")
        mp.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")
        async for vs in _voice_stack(request, stack, tmp_path_factory, modules or CORE):
            yield vs


async def _voice_stack(request, stack, tmp_path_factory, modules, speed=4.0, env=None):
    from services.common import db

    prefix = f"e2e{uuid.uuid4().hex[:8]}."
    await ensure_topics(partitions=2, prefix=prefix)
    vs = VoiceStack(prefix, "p_" + uuid.uuid4().hex[:10], tmp_path_factory.mktemp("logs"), modules, speed, env)
    conn = await db.connect()
    await conn.execute("INSERT INTO accounts (id, name, signing_secret) VALUES ($1, $1, 'whsec_test')", vs.account)
    await conn.execute("INSERT INTO numbers (account_id, number) VALUES ($1, '+15559876543')", vs.account)
    vs.db = conn
    follower = asyncio.create_task(vs._follow())
    for m in modules:
        vs.start(m)
    await _warm_up(vs)
    yield vs
    follower.cancel()
    for m in list(vs.procs):
        vs.kill(m, signal.SIGTERM)
    await conn.execute("DELETE FROM accounts WHERE id = $1", vs.account)
    await conn.execute(f"DROP SCHEMA IF EXISTS {vs.schema} CASCADE")
    await conn.close()


@pytest.fixture(scope="module")
async def voice(request, stack, tmp_path_factory):
    async for vs in _voice_stack(request, stack, tmp_path_factory, CORE + [SPEECH]):
        yield vs


@pytest.fixture(scope="module")
async def kprod(stack):
    from services.common.kafka import make_producer

    p = make_producer()
    await p.start()
    yield p
    await p.stop()
