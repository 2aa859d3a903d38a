"""The per-account cap on live calls: 429 `too_many_live_calls` beyond it, a slot back when
a call ends, the deployment default for accounts without their own, replays always answered."""

from __future__ import annotations

import uuid

import httpx
import pytest

from services.common import accounts, db
from services.common.kafka import ensure_topics
from tests.api_app import new_account, running_app

pytestmark = pytest.mark.integration

BODY = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Hello"}}


async def test_calls_beyond_the_accounts_limit_get_429_until_one_ends(monkeypatch):
    prefix = f"live{uuid.uuid4().hex[:6]}."
    await ensure_topics(prefix=prefix)
    acct, _, key, _ = await new_account("live")
    pg = await db.connect()
    try:
        await accounts.set_limits(pg, acct, max_live_calls=2)
        async with running_app(prefix, monkeypatch) as app:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
                auth = {"Authorization": f"Bearer {key}"}
                first = await http.post("/v1/voice/calls", json=BODY, headers={**auth, "Idempotency-Key": "one"})
                second = await http.post("/v1/voice/calls", json=BODY, headers=auth)
                assert first.status_code == second.status_code == 201, (first.text, second.text)
                over = await http.post("/v1/voice/calls", json=BODY, headers=auth)
                assert over.status_code == 429, over.text
                assert over.json()["error"]["code"] == "too_many_live_calls"
                assert "2 live calls" in over.json()["error"]["message"]
                assert over.headers["retry-after"] == "1"
                # a replay of an accepted request is answered, not counted again
                replay = await http.post("/v1/voice/calls", json=BODY, headers={**auth, "Idempotency-Key": "one"})
                assert replay.status_code == 201 and replay.json()["id"] == first.json()["id"], replay.text
                # nothing of the refused request is left behind
                assert await accounts.live_calls(pg, acct) == 2
                # one call ends (as the orchestrator records it): a slot is free again
                await pg.execute("INSERT INTO orch_calls (call_id, account_id, state) VALUES ($1, $2,"
                                 " '{\"ended\": true, \"phase\": \"ended\"}'::jsonb)", second.json()["id"], acct)
                assert await accounts.live_calls(pg, acct) == 1
                again = await http.post("/v1/voice/calls", json=BODY, headers=auth)
                assert again.status_code == 201, again.text
                assert (await http.post("/v1/voice/calls", json=BODY, headers=auth)).status_code == 429
    finally:
        await pg.execute("DELETE FROM orch_calls WHERE account_id = $1", acct)
        await pg.close()


async def test_the_deployment_default_applies_without_a_limit_of_its_own(monkeypatch):
    prefix = f"live{uuid.uuid4().hex[:6]}."
    await ensure_topics(prefix=prefix)
    monkeypatch.setenv("CANARY_MAX_LIVE_CALLS", "1")
    acct, _, key, _ = await new_account("live")
    async with running_app(prefix, monkeypatch) as app:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            auth = {"Authorization": f"Bearer {key}"}
            assert (await http.post("/v1/voice/calls", json=BODY, headers=auth)).status_code == 201
            r = await http.post("/v1/voice/calls", json=BODY, headers=auth)
            assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_live_calls", r.text


async def test_limits_are_refused_when_negative():
    acct, _, _, _ = await new_account("live")
    pg = await db.connect()
    try:
        with pytest.raises(accounts.AccountError) as e:
            await accounts.set_limits(pg, acct, max_live_calls=-1)
        assert e.value.code == "invalid_limit"
        await accounts.set_limits(pg, acct, max_live_calls=0)
        assert await pg.fetchval("SELECT max_live_calls FROM accounts WHERE id = $1", acct) == 0
        await accounts.set_limits(pg, acct, default_live_calls=True)
        assert await pg.fetchval("SELECT max_live_calls FROM accounts WHERE id = $1", acct) is None
    finally:
        await pg.close()
