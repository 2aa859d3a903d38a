"""Reading the commands topic of a test prefix."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer

from services.common.config import settings


async def read_topic(topic: str, want: int, timeout: float = 15.0) -> list:
    """Every record of `topic` (from the beginning) until `want` arrived or `timeout` passed."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings().kafka_bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out = []
    try:
        end = time.monotonic() + timeout
        while len(out) < want and time.monotonic() < end:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                out.extend(records)
        if len(out) >= want:  # anything more (duplicates) would be a bug: give it a moment to show up
            await asyncio.sleep(0.3)
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out
