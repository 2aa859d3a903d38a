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


async def test_each_batch_continues_its_calls_traces_and_the_timeline_keeps_them(prefix, pg, producer):
    """With span export on, a batch is one `projector project` span per call's trace (child of
    its first event's span, linked to the others'), and every call_events row keeps its event's
    traceparent, from which the API shows the trace id."""
    import dataclasses

    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from events import trace
    from services.api.store import event_trace_id
    from services.common import tracing
    from services.projector.service import Projector

    traced, untraced = call_events(n_calls=2, per_call=5)[:5], call_events(n_calls=1, per_call=5)
    ctx = trace.new_trace().with_state("rojo=00f067aa0ba902b7")
    # Each event emitted in the call's trace by a different span, as the services do.
    traced = [dataclasses.replace(e, traceparent=ctx.child(trace.random_span_id()).header, tracestate=ctx.state)
              for e in traced]
    evs = traced + untraced
    topic = prefix + "voice.call.events"
    await publish_many(producer, topic, evs)
    schema = "p_" + uuid.uuid4().hex[:10]
    spans = InMemorySpanExporter()
    tracing.install(spans, "projector")
    p = Projector(schema=schema, group_id=prefix + "projector", topic=topic)
    await p.start()
    try:
        for _ in range(200):
            if p.applied >= len(evs):
                break
            await p.run_once(200)
        assert p.applied == len(evs)
    finally:
        await p.stop()
        tracing.shutdown()
        trace.set_service("canary")
    try:
        rows = {str(r["event_id"]): r for r in await pg.fetch(
            f"SELECT event_id, traceparent, correlation_id FROM {schema}.call_events")}
        assert {i: rows[i]["traceparent"] for i in rows} == {e.id: e.traceparent for e in evs}
        assert {event_trace_id(rows[e.id]) for e in traced} == {ctx.trace_id}
        assert [event_trace_id(rows[e.id]) for e in untraced] == [trace.of(e).trace_id for e in untraced]
    finally:
        await pg.execute(f"DROP SCHEMA {schema} CASCADE")

    got = [s for s in spans.get_finished_spans() if s.name == "projector project"]
    mine = [s for s in got if f"{s.context.trace_id:032x}" == ctx.trace_id]
    assert mine, [(s.name, f"{s.context.trace_id:032x}") for s in got]
    first = trace.parse(traced[0].traceparent)
    # However the events fell into batches: every event's span is a parent or a link of one.
    seen = {f"{s.parent.span_id:016x}" for s in mine} | {
        f"{link.context.span_id:016x}" for s in mine for link in s.links}
    assert seen == {trace.parse(e.traceparent).span_id for e in traced}
    assert f"{mine[0].parent.span_id:016x}" == first.span_id
    assert f"{mine[0].context.span_id:016x}" == trace.derive_span_id(f"projector/{traced[0].id}")
    assert all(s.context.trace_state.to_header() == ctx.state for s in mine)
    assert sum(s.attributes["canary.events"] for s in mine) == len(traced)
    # The untraced call has the trace of its correlation id, as everywhere else.
    assert any(f"{s.context.trace_id:032x}" == trace.of(untraced[0]).trace_id for s in got)
