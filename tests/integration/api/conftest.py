"""Fixtures for the API tests: the real app in-process (httpx ASGI), real Kafka + Postgres."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.api_app import new_account, running_app

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
    return Acct(*await new_account("t", cps, number))


@pytest.fixture
async def acct(stack) -> Acct:
    return await make_account()


@pytest.fixture
async def other(stack) -> Acct:
    return await make_account()


@pytest.fixture
async def app(prefix, monkeypatch):
    """The API app with its runtime started, on this test's topic prefix."""
    async with running_app(prefix, monkeypatch) as application:
        yield application


@pytest.fixture
async def client(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as c:
        yield c
