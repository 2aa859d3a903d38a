"""Flow-webhook requests: at most `flow_in_flight` asked of apps at once, and none lost to a restart.

A real app server holds each request until the test lets it answer. With the bound at N,
N+k requests never have more than N open at once; and a worker stopped while some are
unanswered (its tasks cancelled, as a crash would) leaves the committed offset at the
oldest of them, so the next worker asks again and every request has exactly one answer
on the log.
"""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from aiohttp import web

from events import Envelope, decode
from services.common.kafka import make_consumer, publish_many
from services.webhooks.policy import WebhookSettings
from services.webhooks.service import WebhookWorker
from tests.integration.webhooks.conftest import FAST, wait_for

pytestmark = pytest.mark.integration

N = 2


class App:
    """Answers POST /flow only when the test releases that step."""

    def __init__(self) -> None:
        self.active = 0
        self.max_active = 0
        self.arrived: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.port = 0

    def gate(self, step: str) -> asyncio.Event:
        return self.gates.setdefault(step, asyncio.Event())

    async def handle(self, request: web.Request) -> web.Response:
        step = orjson.loads(await request.read())["step"]
        self.arrived.append(step)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await self.gate(step).wait()
        finally:
            self.active -= 1
        return web.json_response({"steps": [{"say": f"answer {step}"}]})


@pytest.fixture
async def app():
    a = App()
    server = web.Application()
    server.router.add_post("/flow", a.handle)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    a.port = site._server.sockets[0].getsockname()[1]
    yield a
    for g in a.gates.values():
        g.set()
    await runner.cleanup()


def _requests(account_id: str, port: int, n: int) -> list[Envelope]:
    call_id = f"call_{uuid.uuid4().hex[:12]}"  # one call: one partition, in order
    return [Envelope(type="flow.webhook.requested", call_id=call_id, account_id=account_id,
                     data={"url": f"http://127.0.0.1:{port}/flow", "step": f"s{i}", "digits": str(i), "speech": None},
                     occurred_at=f"2026-01-01T00:00:{i:02d}.000Z") for i in range(n)]


async def _answers(topic: str, request_ids: set[str]) -> list[Envelope]:
    """Every flow-webhook answer to those requests on the topic, from the start to its end now."""
    from aiokafka import TopicPartition

    consumer = make_consumer(group_id=None)
    await consumer.start()
    out = []
    try:
        parts = [TopicPartition(topic, p) for p in range(2)]  # the `prefix` fixture's topics have 2
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        async def behind() -> bool:
            return any([await consumer.position(tp) < o for tp, o in end.items()])

        while await behind():
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                for m in msgs:
                    env = decode(m.value)
                    if getattr(env, "causation_id", None) in request_ids and env.type.startswith("flow.webhook."):
                        out.append(env)
    finally:
        await consumer.stop()
    return out


def _worker(prefix: str) -> WebhookWorker:
    return WebhookWorker(topic=prefix + "voice.call.events", group_id=prefix + "webhooks",
                         dlq_topic=prefix + "voice.dlq", settings=WebhookSettings(**{**FAST, "flow_in_flight": N}))


async def test_never_more_than_the_bound_in_flight(prefix, producer, account, app, run_worker, monkeypatch):
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")
    reqs = _requests(account[0], app.port, N + 3)
    w = await run_worker(flow_in_flight=N)
    await publish_many(producer, prefix + "voice.call.events", reqs)
    for i in range(len(reqs)):  # answer them one by one, oldest first; the next comes only when a slot frees
        await wait_for(lambda i=i: len(app.arrived) >= min(i + N, len(reqs)))
        assert app.active <= N and w.flow_in_flight <= N
        app.gate(f"s{i}").set()
    await wait_for(lambda: len(app.arrived) == len(reqs) and app.active == 0)
    assert app.max_active == N  # the bound was reached, never passed
    assert sorted(app.arrived) == [f"s{i}" for i in range(len(reqs))]

    async def all_answered():
        got = await _answers(prefix + "voice.call.events", {r.id for r in reqs})
        return got if len(got) >= len(reqs) else None
    got = await wait_for(all_answered)
    assert {e.causation_id for e in got} == {r.id for r in reqs}


async def test_a_restart_asks_again_what_was_unanswered_and_each_answer_is_on_the_log_once(
        prefix, producer, account, app, run_worker, monkeypatch):
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")
    reqs = _requests(account[0], app.port, N + 2)  # s0..s3
    first = _worker(prefix)
    await first.start()
    running = asyncio.create_task(first.run())
    try:
        await publish_many(producer, prefix + "voice.call.events", reqs)
        await wait_for(lambda: app.arrived[:N] == ["s0", "s1"])
        app.gate("s0").set()  # s0 answered; s1 and s2 are open, s3 waits for a slot
        await wait_for(lambda: len(app.arrived) == 3 and app.active == 2)  # s1, s2 open

        async def s0_answered():
            return await _answers(prefix + "voice.call.events", {reqs[0].id})
        await wait_for(s0_answered)
    finally:  # the worker goes away with s1, s2 unanswered (its tasks cancelled, as in a crash)
        first.stopping.set()
        await running
        flows = list(first.tasks)
        for t in flows:
            t.cancel()
        await asyncio.gather(*flows, return_exceptions=True)
        await first.stop()
    assert "s3" not in app.arrived  # never asked: the bound held it back

    for step in ("s1", "s2", "s3"):  # the next worker's requests are answered at once
        app.gate(step).set()
    second = await run_worker(flow_in_flight=N)

    async def all_answered():
        got = await _answers(prefix + "voice.call.events", {r.id for r in reqs})
        return got if {e.causation_id for e in got} == {r.id for r in reqs} else None
    await wait_for(all_answered)
    await wait_for(lambda: second.flow_in_flight == 0 and not any(second._unanswered.values()))
    got = await _answers(prefix + "voice.call.events", {r.id for r in reqs})
    ids = [e.id for e in got]
    assert len(ids) == len(set(ids)) == len(reqs), [(e.type, e.data.get("step")) for e in got]
    assert sorted(app.arrived) == ["s0", "s1", "s1", "s2", "s2", "s3"]  # s1 and s2 asked again, s0 not
