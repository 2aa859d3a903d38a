"""Reading the commands topic of a test prefix."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer

from services.common.config import settings


async def read_topic(topic: str, want: int, timeout: float = 60.0) -> list:
    """Every record of `topic` (from the beginning): wait until `want` arrived (or `timeout`
    passed), then read on to the end of the topic as it is at that moment, so a duplicate
    already produced is always in the result (callers check the exact count)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings().kafka_bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out = []

    def add(batch) -> None:
        for records in batch.values():
            out.extend(records)

    try:
        end = time.monotonic() + timeout
        while len(out) < want and time.monotonic() < end:
            add(await consumer.getmany(timeout_ms=300))
        if len(out) >= want:
            ends = await consumer.end_offsets(list(consumer.assignment()))
            while time.monotonic() < end:
                behind = [tp for tp, off in ends.items() if await consumer.position(tp) < off]
                if not behind:
                    break
                add(await consumer.getmany(*behind, timeout_ms=300))
    finally:
        await consumer.stop()
    return out
