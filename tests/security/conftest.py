"""Fixtures of the security tests: the real API app in-process (httpx ASGI, lifespan run)
on the real local stack, and accounts with a sandbox and a live key."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest

from services.common import accounts, db


@dataclass
class Acct:
    id: str
    name: str
    test_key: str
    live_key: str

    @property
    def test(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.test_key}"}

    @property
    def live(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.live_key}"}


async def make_account(number: str | None = "+15559876543") -> Acct:
    await db.migrate()
    conn = await db.connect()
    try:
        a = await accounts.create_account(conn, f"sec-{uuid.uuid4().hex[:12]}", 1000.0)
        if number:
            await accounts.ensure_number(conn, a["id"], number)
        _, test = await accounts.create_key(conn, a["id"], "test")
        _, live = await accounts.create_key(conn, a["id"], "live")
        return Acct(a["id"], a["name"], test, live)
    finally:
        await conn.close()


@pytest.fixture
async def acct(stack) -> Acct:
    return await make_account()


@pytest.fixture
async def api(prefix, monkeypatch):
    """An httpx client on the whole API app (its Runtime started), on this test's topics."""
    from services.api.app import create_app
    from services.api.runtime import Runtime

    monkeypatch.setenv("CANARY_TOPIC_PREFIX", prefix)
    rt = Runtime()
    await rt.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(rt)),
                                     base_url="http://api.test") as client:
            yield client
    finally:
        await rt.stop()
