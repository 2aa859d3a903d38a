"""Fixtures for the API tests: the real app in-process (httpx ASGI), real Kafka + Postgres."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest

from services.common import accounts, db

DOCS_BODY = {"to": "+15551234567", "from": "+15559876543",
             "tts": {"text": "Hello! This is a call from Canary. Press 1 to confirm.", "voice": "en-US-Neural2-F"}}


@dataclass
class Acct:
    id: str
    name: str
    key: str
    live_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def make_account(cps: float = 1000.0, number: str = "+15559876543") -> Acct:
    await db.migrate()
    conn = await db.connect()
    try:
        a = await accounts.create_account(conn, f"t-{uuid.uuid4().hex[:12]}", cps)
        if number:
            await accounts.ensure_number(conn, a["id"], number)
        _, key = await accounts.create_key(conn, a["id"], "test")
        _, live = await accounts.create_key(conn, a["id"], "live")
        return Acct(a["id"], a["name"], key, live)
    finally:
        await conn.close()


@pytest.fixture
async def acct(stack) -> Acct:
    return await make_account()


@pytest.fixture
async def other(stack) -> Acct:
    return await make_account()


@pytest.fixture
async def app(prefix, monkeypatch):
    """The API app with its runtime started, on this test's topic prefix."""
    from services.api.app import create_app
    from services.api.runtime import Runtime

    monkeypatch.setenv("CANARY_TOPIC_PREFIX", prefix)
    rt = Runtime()
    await rt.start()
    application = create_app(rt)
    yield application
    await rt.stop()


@pytest.fixture
async def client(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as c:
        yield c
