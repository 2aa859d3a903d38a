"""Fixtures for webhook tests: a real HTTP receiver that checks signatures, an account,
and in-process workers on the test's own topics."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from events import Envelope
from services.common import signing
from services.webhooks.policy import WebhookSettings
from services.webhooks.service import WebhookWorker


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    at: float
    status: int

    @property
    def json(self) -> dict[str, Any]:
        return orjson.loads(self.body)


@dataclass
class Receiver:
    """aiohttp server on 127.0.0.1; `script[path]` lists answers, then 200. An answer is a
    status, ("sleep", s) (answer 200 after s seconds), or ("while", predicate, status):
    answer `status` for as long as `predicate()` holds (the entry stays), then go on."""

    secret: str
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    script: dict[str, list[Any]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = signing.is_valid(self.secret, body, request.headers.get("Canary-Signature", ""))
        steps = self.script.get(request.path)
        while steps and isinstance(steps[0], tuple) and steps[0][0] == "while" and not steps[0][1]():
            steps.pop(0)
        if steps and isinstance(steps[0], tuple) and steps[0][0] == "while":
            action = steps[0][2]
        else:
            action = steps.pop(0) if steps else 200
        status = 200
        if isinstance(action, tuple) and action[0] == "sleep":
            await asyncio.sleep(action[1])
        else:
            status = int(action)
        self.requests.append(Received(request.path, dict(request.headers), body, ok, time.monotonic(), status))
        return web.Response(status=status, text="ok" if status < 300 else "nope")


@pytest.fixture
async def account(pg):
    acct_id = f"acct_{uuid.uuid4().hex[:12]}"
    secret = f"whsec_{uuid.uuid4().hex}"
    await pg.execute("INSERT INTO accounts (id, name, signing_secret) VALUES ($1, $2, $3)", acct_id, acct_id, secret)
    yield acct_id, secret
    await pg.execute("DELETE FROM webhook_deliveries WHERE account_id = $1", acct_id)
    await pg.execute("DELETE FROM webhook_calls WHERE account_id = $1", acct_id)
    await pg.execute("DELETE FROM accounts WHERE id = $1", acct_id)


@pytest.fixture
async def receiver(account):
    rec = Receiver(secret=account[1])
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.port = site._server.sockets[0].getsockname()[1]
    yield rec
    await runner.cleanup()


FAST = dict(max_attempts=4, backoff_base=0.2, backoff_max=2.0, timeout=1.0, concurrency=16, per_account=8,
            per_endpoint=8, slow_ms=5000, slow_lane=4, poll_interval=0.05)


@pytest.fixture
async def run_worker(prefix, monkeypatch):
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")
    running: list[tuple[WebhookWorker, asyncio.Task]] = []

    async def start(**overrides: Any) -> WebhookWorker:
        w = WebhookWorker(topic=prefix + "voice.call.events", group_id=prefix + "webhooks",
                          dlq_topic=prefix + "voice.dlq", settings=WebhookSettings(**{**FAST, **overrides}))
        await w.start()
        running.append((w, asyncio.create_task(w.run())))
        return w

    yield start
    for w, task in running:
        w.stopping.set()
        await task
        await w.stop()


def call_events(account_id: str, webhook_url: str | None, gather_url: str | None = None,
                types: tuple[str, ...] = ("call.queued", "call.ringing", "call.answered", "call.completed"),
                call_id: str | None = None) -> list[Envelope]:
    cid = call_id or f"call_{uuid.uuid4().hex[:12]}"
    out = []
    for i, t in enumerate(types):
        data: dict[str, Any] = {}
        if t == "call.queued":
            data = {"to": "+15551234567", "from": "+15559876543", "created_at": "2026-01-01T00:00:00Z",
                    "direction": "outbound", "tts": {"text": "Enter your PIN"}}
            if webhook_url:
                data["webhook_url"] = webhook_url
            if gather_url:
                data["gather"] = {"type": "dtmf", "num_digits": 4, "finish_on_key": "#", "timeout": 10,
                                  "webhook_url": gather_url}
        elif t == "gather.completed":
            data = {"digits": "1234", "finished_on_key": "#"}
        elif t == "call.completed":
            data = {"reason": "callee hung up", "hangup_by": "callee", "duration": 12}
        out.append(Envelope(type=t, call_id=cid, account_id=account_id, data=data,
                            occurred_at=f"2026-01-01T00:00:{i:02d}.000Z"))
    return out


async def wait_for(fn, timeout: float = 60.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = await fn() if asyncio.iscoroutinefunction(fn) else fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(every)
