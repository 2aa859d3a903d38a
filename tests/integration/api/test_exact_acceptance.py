"""Exact acceptance: a POST answered with an error is never dialed, a 2xx always is.

The broker is frozen for real (SIGSTOP) while the API sends, so the API's send times out
and it answers 503; the PlaceCall still reaches the log when the broker wakes (the
producer's retry), or the test sends those same bytes itself, as a late retry would. A
real orchestrator then refuses it: no call.queued, no dial, a DLQ record saying why.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import httpx
import orjson
import pytest

from events import decode
from services.common import db
from services.common.kafka import ensure_topics, make_consumer, make_producer
from tests.api_app import new_account, running_app
from tests.conftest import broker_pid, frozen, service_env, spawn

pytestmark = pytest.mark.integration

BODY = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Hello"}}


async def _records(topic: str, want, timeout: float = 60.0) -> list:
    """Records of `topic` (from the start) until `want(records)` holds."""
    c = make_consumer(topic, group_id=None, auto_offset_reset="earliest")
    await c.start()
    seen: list = []
    try:
        deadline = time.monotonic() + timeout
        while not want(seen):
            assert time.monotonic() < deadline, f"{topic}: {seen[-5:]}"
            for ms in (await c.getmany(timeout_ms=200)).values():
                seen.extend(ms)
        return seen
    finally:
        await c.stop()


async def test_a_post_answered_503_is_never_dialed_even_when_its_send_lands_later(monkeypatch, tmp_path):
    prefix = f"accept{uuid.uuid4().hex[:6]}."
    await ensure_topics(prefix=prefix)
    acct, _, key, _ = await new_account("accept")
    monkeypatch.setenv("CANARY_API_SEND_TIMEOUT", "1.0")
    auth = {"Authorization": f"Bearer {key}"}
    pg = await db.connect()
    orch = None
    try:
        async with running_app(prefix, monkeypatch) as app:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                         timeout=30) as http:
                ok = await http.post("/v1/voice/calls", json=BODY, headers=auth)
                assert ok.status_code == 201, ok.text
                with frozen([broker_pid()]):
                    t0 = time.perf_counter()
                    refused = await http.post("/v1/voice/calls", json=BODY, headers=auth)
                    took = time.perf_counter() - t0
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"]["code"] == "kafka_unavailable"
                assert took < 10, took
                row = await pg.fetchrow("SELECT id, request FROM call_requests WHERE account_id = $1"
                                        " AND state = 'abandoned'", acct)
                assert row is not None, "the refused request is not marked abandoned"
                lost = row["id"]
                assert (await http.get(f"/v1/voice/calls/{lost}", headers=auth)).status_code == 404
                listed = (await http.get("/v1/voice/calls", headers=auth)).json()["data"]
                assert [c["id"] for c in listed] == [ok.json()["id"]]
        # The same PlaceCall bytes, as a late landing of that send would put them on the log.
        commands = prefix + "voice.call.commands"
        sent = await _records(commands, lambda rs: len(rs) >= 1)
        late = next((m.value for m in sent if decode(m.value).call_id == lost), None)
        if late is None:  # the frozen send never landed: send it now, as the producer's retry would
            from events import new_envelope
            # (the row's jsonb comes back as text on the test's plain connection)
            data = row["request"] if isinstance(row["request"], dict) else orjson.loads(row["request"])
            late = orjson.dumps(new_envelope("PlaceCall", lost, acct, data).to_dict())
        p = make_producer()
        await p.start()
        try:
            await (await p.send(commands, late, key=lost.encode()))
        finally:
            await p.stop()

        orch = spawn("services.orchestrator.service", service_env(prefix), tmp_path / "orchestrator.log")
        dlq = await _records(prefix + "voice.dlq", lambda rs: any(
            orjson.loads(m.value)["code"] == "request_abandoned" for m in rs), timeout=90)
        why = next(orjson.loads(m.value) for m in dlq if orjson.loads(m.value)["code"] == "request_abandoned")
        assert why["consumer"] == "orchestrator" and why["source"]["topic"] == commands
        events = await _records(prefix + "voice.call.events", lambda rs: any(
            decode(m.value).type == "dial.requested" for m in rs), timeout=60)
        dialed = {decode(m.value).call_id for m in events if decode(m.value).type == "dial.requested"}
        queued = {decode(m.value).call_id for m in events if decode(m.value).type == "call.queued"}
        assert ok.json()["id"] in dialed  # the 201 is placed...
        assert lost not in dialed | queued  # ...the 503 never
        assert await pg.fetchval("SELECT state FROM call_requests WHERE id = $1", ok.json()["id"]) == "accepted"
        assert await pg.fetchval("SELECT state FROM call_requests WHERE id = $1", lost) == "abandoned"
    finally:
        if orch is not None:
            os.killpg(orch.pid, signal.SIGTERM)
            orch.wait(timeout=30)
        await pg.close()


async def test_an_abandon_that_comes_after_the_orchestrator_accepted_is_a_201(monkeypatch):
    """The race the other way round: the send timed out at the API but landed, and the
    orchestrator took the call first. The API must answer 201 (the call is placed)."""
    from services.api.routers.calls import _publish_or_abandon
    from services.api.errors import unavailable

    acct, _, _, _ = await new_account("accept")
    pg = await db.create_pool(min_size=1, max_size=2)
    call_id = "call_" + uuid.uuid4().hex[:20]
    try:
        await pg.execute("INSERT INTO call_requests (id, account_id, to_number, from_number, request, created_at,"
                         " state) VALUES ($1, $2, '+15551234567', '+15559876543', '{}'::jsonb, now(), 'accepted')",
                         call_id, acct)

        class TimedOut:
            async def publish(self, topic, env):
                raise unavailable("kafka")

        class Env:
            pass

        env = Env()
        env.call_id = call_id
        await _publish_or_abandon(TimedOut(), pg, "t", env)  # returns: accepted, no 503
        assert await pg.fetchval("SELECT state FROM call_requests WHERE id = $1", call_id) == "accepted"
    finally:
        await pg.close()
