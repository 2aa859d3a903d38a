"""Projector throughput: events/s applied to Postgres, as a ratio to a raw COPY of the same rows.

    python bench/projector.py [--events 200000] [--spans]

Both figures are measured in this run on this machine (shared, noisy), so the ratio
is what to compare across runs. Needs the stack up (`canary-voice stack up`). Every call is
its own trace, as POSTed calls are. `--spans` measures with span export on (the projector's
span a call a batch, to an exporter that discards them), off by default as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from events import Envelope, trace  # noqa: E402
from services.common import db  # noqa: E402
from services.common.kafka import ensure_topics, make_producer, publish_many  # noqa: E402
from services.projector.calls import ts  # noqa: E402
from services.projector.service import Projector  # noqa: E402
from services.common.db import init_connection  # noqa: E402
from services.projector.store import EVENT_COLUMNS, ensure_schema  # noqa: E402

TYPES = ["call.queued", "call.ringing", "call.answered", "dtmf.received", "dtmf.received", "dtmf.received",
         "dtmf.received", "gather.completed", "prompt.finished", "call.completed"]


def make_events(n: int) -> list[Envelope]:
    out = []
    for c in range(n // len(TYPES)):
        cid = f"call_{uuid.uuid4().hex[:16]}"
        tp = trace.new_trace().header
        for i, t in enumerate(TYPES):
            data = {"to": "+15551234567", "from": "+15559876543", "created_at": "2026-01-01T00:00:00Z"} \
                if t == "call.queued" else {"digit": "5"} if t == "dtmf.received" else \
                {"digits": "5555", "finished_on_key": "#"} if t == "gather.completed" else {}
            out.append(Envelope(type=t, call_id=cid, account_id="acct_bench", data=data,
                                occurred_at=f"2026-01-01T00:00:{i:02d}Z", traceparent=tp))
    return out


def _discarding_exporter():
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    return Discard()


async def main(n: int, spans: bool = False) -> None:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    topic = prefix + "voice.call.events"
    await ensure_topics(prefix=prefix)
    evs = make_events(n)
    producer = make_producer(linger_ms=20)
    await producer.start()
    for i in range(0, len(evs), 20000):
        await publish_many(producer, topic, evs[i:i + 20000])
    await producer.stop()

    conn = await db.connect()
    await init_connection(conn)
    base_schema = "bench_copy_" + uuid.uuid4().hex[:6]
    await ensure_schema(conn, base_schema)
    rows = [(e.id, e.call_id, e.account_id, e.type, e.version, ts(e.occurred_at), 0, i, None, None, e.data,
             e.traceparent)
            for i, e in enumerate(evs)]
    t0 = time.perf_counter()
    for i in range(0, len(rows), 5000):
        await conn.copy_records_to_table("call_events", schema_name=base_schema, records=rows[i:i + 5000],
                                         columns=EVENT_COLUMNS)
    copy_s = time.perf_counter() - t0

    schema = "bench_proj_" + uuid.uuid4().hex[:6]
    if spans:
        from services.common import tracing

        tracing.install(_discarding_exporter(), "projector", batch=True)
    p = Projector(schema=schema, group_id=prefix + "projector", topic=topic)
    await p.start()
    t0 = time.perf_counter()
    runner = asyncio.create_task(p.run())  # the service's own (pipelined) loop
    while p.applied < len(evs):
        await asyncio.sleep(0.005)
    proj_s = time.perf_counter() - t0
    p.stopping.set()
    await runner
    await p.stop()
    for s in (schema, base_schema):
        await conn.execute(f"DROP SCHEMA {s} CASCADE")
    await conn.close()

    copy_rate, proj_rate = len(evs) / copy_s, len(evs) / proj_s
    print(f"events: {len(evs)}")
    print(f"baseline raw COPY of the same call_events rows: {copy_rate:,.0f} rows/s")
    print(f"projector (consume + decode + fold + COPY/upsert + offsets, exactly-once,"
          f" span export {'on' if spans else 'off'}): {proj_rate:,.0f} events/s")
    print(f"ratio projector/raw COPY: {proj_rate / copy_rate:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--spans", action="store_true", help="span export on (to a discarding exporter)")
    args = ap.parse_args()
    asyncio.run(main(args.events, args.spans))
