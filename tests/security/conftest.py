"""Fixtures of the security tests: the real API app in-process (httpx ASGI, lifespan run)
on the real local stack, and accounts with a sandbox and a live key."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.api_app import new_account, running_app


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
    return Acct(*await new_account("sec", 1000.0, number))


@pytest.fixture
async def acct(stack) -> Acct:
    return await make_account()


@pytest.fixture
async def api(prefix, monkeypatch):
    """An httpx client on the whole API app (its Runtime started), on this test's topics."""
    async with running_app(prefix, monkeypatch) as app:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client:
            yield client
