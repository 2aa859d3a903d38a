"""Replay throughput: rebuild projections from a log of N events, as a ratio to a raw consume.

    python bench/replay.py [--events 1000000]

Baseline, measured in the same run on the same topic: a consumer that only fetches
the records (no decode, no Postgres). Target: 1,000,000 events replayed in <= 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aiokafka import TopicPartition  # noqa: E402

from bench.projector import make_events  # noqa: E402
from services.common import db  # noqa: E402
from services.common.kafka import ensure_topics, make_consumer, make_producer, publish_many  # noqa: E402


async def raw_consume(topic: str, total: int) -> float:
    c = make_consumer(group_id=None, max_poll_records=10000)
    await c.start()
    cluster = await c._client.fetch_all_metadata()
    tps = [TopicPartition(topic, p) for p in cluster.partitions_for_topic(topic)]
    c.assign(tps)
    await c.seek_to_beginning(*tps)
    n, t0 = 0, time.perf_counter()
    while n < total:
        for msgs in (await c.getmany(timeout_ms=500, max_records=10000)).values():
            n += len(msgs)
    dt = time.perf_counter() - t0
    await c.stop()
    return dt


async def main(n: int) -> None:
    prefix = f"benchr{uuid.uuid4().hex[:6]}."
    os.environ["CANARY_TOPIC_PREFIX"] = prefix
    os.environ["CANARY_PROJECTION_SCHEMA"] = "bench_live_" + prefix.rstrip(".")
    await ensure_topics(prefix=prefix)
    topic = prefix + "voice.call.events"
    producer = make_producer(linger_ms=20)
    await producer.start()
    t0 = time.perf_counter()
    for i in range(0, n, 50_000):
        await publish_many(producer, topic, make_events(min(50_000, n - i)))
    await producer.stop()
    print(f"produced {n:,} events in {time.perf_counter() - t0:.1f} s")

    raw_s = await raw_consume(topic, n)
    # Import after the prefix is set: topic names are read from the environment.
    import importlib

    import events.topics
    importlib.reload(events.topics)
    from services.ops import replay as rp
    importlib.reload(rp)
    conn = await db.connect()
    from services.common.db import init_connection
    await init_connection(conn)
    schema = "bench_rebuild_" + prefix.rstrip(".")
    rb = rp.Rebuild(conn, schema)
    await rb.start()
    end = await rp._end_offsets(rb.consumer, topic)
    t0 = time.perf_counter()
    await rb.run_to(end)
    replay_s = time.perf_counter() - t0
    await rb.stop()
    await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    await conn.close()
    print(f"baseline raw consume: {n / raw_s:,.0f} events/s ({raw_s:.1f} s)")
    print(f"replay into a fresh projection: {n / replay_s:,.0f} events/s ({replay_s:.1f} s for {n:,})")
    print(f"ratio replay/raw consume: {raw_s / replay_s:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    asyncio.run(main(ap.parse_args().events))
