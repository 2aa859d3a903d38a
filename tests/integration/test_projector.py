"""The projector against a real broker and database: exactly-once under SIGKILL, DLQ."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import orjson
import pytest

from events import Envelope
from services.common.kafka import make_consumer, publish_many
from tests.conftest import ROOT, service_env, spawn

pytestmark = pytest.mark.integration


def call_events(n_calls: int, per_call: int) -> list[Envelope]:
    out = []
    for c in range(n_calls):
        cid = f"call_{uuid.uuid4().hex[:12]}"
        types = ["call.queued", "call.ringing", "call.answered"] + ["dtmf.received"] * (per_call - 4) + [
            "call.completed"]
        for i, t in enumerate(types):
            data = {"to": "+15551234567", "from": "+15559876543", "created_at": "2026-01-01T00:00:00Z"} \
                if t == "call.queued" else ({"digit": "1"} if t == "dtmf.received" else {})
            out.append(Envelope(type=t, call_id=cid, account_id="acct_test", data=data,
                                occurred_at=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z"))
    return out


async def wait_for(fn, timeout=60.0, every=0.1):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fn()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(every)


async def test_sigkill_mid_batch_applies_every_event_exactly_once(prefix, pg, producer, tmp_path):
    from services.common import db

    schema = "p_" + uuid.uuid4().hex[:10]
    evs = call_events(n_calls=400, per_call=10)  # 4,000 events
    first, second = evs[:2000], evs[2000:]  # calls 1-200, then calls 201-400
    topic = prefix + "voice.call.events"
    await publish_many(producer, topic, first)
    env = service_env(prefix, CANARY_PROJECTION_SCHEMA=schema, CANARY_PROJECTOR_BATCH="100")
    log = tmp_path / "projector.log"
    proc = spawn("services.projector.service", env, log)

    async def count():
        try:
            return await pg.fetchval(f"SELECT count(*) FROM {schema}.call_events")
        except Exception:
            return 0

    async def stored_offsets():
        try:
            return await pg.fetchval(f"SELECT coalesce(sum(next_offset), 0) FROM {schema}.offsets")
        except Exception:
            return 0

    async def blocked_on_calls():
        return await pg.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE NOT l.granted AND n.nspname = $1 AND c.relname = 'calls'", schema)

    await wait_for(lambda: _equals(count, len(first)), timeout=120)  # committed batches before the kill
    # Hold the projector's next batch in the middle: its call_events rows are written (not
    # committed) when it has to wait for this lock to upsert the calls rows.
    locker = await db.connect()
    try:
        async with locker.transaction():
            await locker.execute(f"LOCK TABLE {schema}.calls IN SHARE MODE")
            await publish_many(producer, topic, second)
            await wait_for(blocked_on_calls, timeout=120)
            os.killpg(proc.pid, signal.SIGKILL)  # no chance to finish the batch or commit anything
            proc.wait()
            assert await count() == len(first)  # the batch in flight was not committed
    finally:
        await locker.close()

    proc = spawn("services.projector.service", env, log)
    try:
        await wait_for(lambda: _equals(stored_offsets, len(evs)), timeout=120)  # caught up: nothing left to apply
        assert await count() == len(evs)
        # A double-applied event would bump events_count past the number of events per call.
        rows = await pg.fetch(f"SELECT status, events_count FROM {schema}.calls")
        assert len(rows) == 400
        assert all(r["events_count"] == 10 and r["status"] == "completed" for r in rows)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        await pg.execute(f"DROP SCHEMA {schema} CASCADE")


async def _equals(fn, value) -> bool:
    return await fn() == value


async def test_garbage_goes_to_dlq_and_projector_keeps_going(prefix, pg, producer, tmp_path):
    schema = "p_" + uuid.uuid4().hex[:10]
    topic = prefix + "voice.call.events"
    good = call_events(n_calls=1, per_call=4)
    await producer.send_and_wait(topic, b"garbage{", key=good[0].call_id.encode())
    await producer.send_and_wait(topic, orjson.dumps({"id": str(uuid.uuid4()), "type": "call.teleported",
                                                      "version": 1, "call_id": good[0].call_id,
                                                      "account_id": "a", "occurred_at": "2026-01-01T00:00:00Z",
                                                      "data": {}}), key=good[0].call_id.encode())
    await publish_many(producer, topic, good)
    proc = spawn("services.projector.service", service_env(prefix, CANARY_PROJECTION_SCHEMA=schema),
                 tmp_path / "p.log")
    try:
        async def done():
            try:
                return await pg.fetchval(f"SELECT status FROM {schema}.calls WHERE id = $1", good[0].call_id)
            except Exception:
                return None
        assert await wait_for(done) == "completed"
        consumer = make_consumer(prefix + "voice.dlq", group_id=None)
        await consumer.start()
        try:
            recs = []
            async def dlq():
                batch = await consumer.getmany(timeout_ms=500)
                recs.extend(orjson.loads(m.value) for ms in batch.values() for m in ms)
                return len(recs) >= 2
            await wait_for(dlq, timeout=30)
        finally:
            await consumer.stop()
        by_code = {r["code"]: r for r in recs}
        assert by_code["malformed_json"]["raw_text"] == "garbage{"
        assert by_code["malformed_json"]["source"]["topic"] == topic
        assert "call.teleported" in by_code["unknown_type"]["reason"]
        assert len(recs) == 2  # each bad message dead-lettered once
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        await pg.execute(f"DROP SCHEMA {schema} CASCADE")
