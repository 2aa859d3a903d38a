"""The projector: voice.call.events -> Postgres projections, exactly-once in effect.

Positions are owned by Postgres (the offsets table, written in the same transaction
as the rows), not by Kafka's group commits: on every partition assignment we seek to
the stored position. A crash anywhere replays at most the uncommitted batch, which
the store then recognises as already applied.
"""

from __future__ import annotations

import asyncio
import os

from aiokafka import TopicPartition

from events import DecodeError, decode, topics
from services.common import db
from services.common.config import projection_schema
from services.common.kafka import SeekToStored, dlq_record, make_consumer, make_producer
from services.common.logging import configure
from services.common.service import serve
from services.projector.store import ProjectionStore, Record, ensure_schema

log = configure("projector")


class Projector:
    def __init__(self, schema: str = "projection", group_id: str = "projector", topic: str | None = None,
                 batch_max: int = 5000):
        self.schema = schema
        self.group_id = group_id
        self.topic = topic or topics.EVENTS
        self.batch_max = batch_max
        self.stopping = asyncio.Event()
        self.applied = 0
        # partition -> next offset known to be applied; drops records a fetch buffered
        # before a rebalance seek, so a bad message is not dead-lettered twice.
        self.positions: dict[int, int] = {}
        self._pending: asyncio.Task | None = None  # the batch being written while the next is fetched

    async def start(self) -> None:
        self.conn = await db.connect()
        await db.init_connection(self.conn)
        await ensure_schema(self.conn, self.schema)
        self.store = ProjectionStore(self.conn, self.schema, consumer=self.group_id, topic=self.topic)
        self.producer = make_producer()
        await self.producer.start()
        self.consumer = make_consumer(group_id=self.group_id)
        self.consumer.subscribe([self.topic], listener=SeekToStored(lambda: self.consumer, self._stored))
        await self.consumer.start()
        log.info("projector started", topic=self.topic, schema=self.schema)

    async def _stored(self) -> dict[tuple[str, int], int]:
        if self._pending is not None:  # a rebalance during the pipelined loop: let the write finish
            await asyncio.shield(self._pending)
        self.positions = await self.store.offsets()
        return {(self.topic, p): o for p, o in self.positions.items()}

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()
        await self.conn.close()

    async def _fetch(self, timeout_ms: int) -> tuple[list[Record], dict[int, int], list] | None:
        """Consume and decode one batch (CPU work that can overlap the previous batch's writes)."""
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=self.batch_max)
        records: list[Record] = []
        upto: dict[int, int] = {}
        dlq: list[tuple[bytes, bytes]] = []
        for tp, msgs in batches.items():
            for m in msgs:
                if m.offset < self.positions.get(tp.partition, 0):
                    continue
                env = decode(m.value)
                if isinstance(env, DecodeError):
                    key = f"{tp.topic}:{tp.partition}:{m.offset}".encode()
                    dlq.append((key, dlq_record(env.reason, env.code, source_topic=tp.topic,
                                                partition=tp.partition, offset=m.offset, raw=m.value,
                                                type=env.type, errors=env.errors)))
                    log.warning("event rejected to dlq", code=env.code, reason=env.reason,
                                partition=tp.partition, offset=m.offset)
                else:
                    records.append(Record(tp.partition, m.offset, env))
                upto[tp.partition] = m.offset + 1
        return (records, upto, dlq) if upto else None

    async def _apply(self, batch: tuple[list[Record], dict[int, int], list]) -> int:
        """Dead-letter, apply and record positions for one fetched batch."""
        records, upto, dlq = batch
        # The DLQ record must be durable before the offset that skips the bad message is.
        if dlq:
            # Keyed by source position: a DLQ reader can dedupe a rare re-send after a crash.
            futs = [await self.producer.send(topics.DLQ, raw, key=key) for key, raw in dlq]
            await asyncio.gather(*futs)
        res = await self.store.apply_batch(records, upto)
        self.positions.update(upto)
        self.applied += res.applied
        if res.duplicates or res.skipped_stale:
            log.info("redelivered events ignored", duplicates=res.duplicates, stale=res.skipped_stale)
        # Kafka's own commit only feeds lag monitoring; the truth is in Postgres.
        try:
            await self.consumer.commit({TopicPartition(self.topic, p): o for p, o in upto.items()})
        except Exception as exc:  # a rebalance may revoke the partitions meanwhile: harmless
            log.debug("kafka commit skipped", error=str(exc))
        return len(records) + len(dlq)

    async def run_once(self, timeout_ms: int = 500) -> int:
        """Consume and apply one batch; returns the number of records seen."""
        batch = await self._fetch(timeout_ms)
        return await self._apply(batch) if batch else 0

    async def run(self) -> None:
        """Pipelined: decode batch N+1 while batch N is written (one batch in flight, in order)."""
        try:
            while not self.stopping.is_set():
                batch = await self._fetch(200 if self._pending else 500)
                if self._pending is not None:
                    await self._pending
                    self._pending = None
                if batch:
                    self._pending = asyncio.create_task(self._apply(batch))
        finally:
            if self._pending is not None:
                await self._pending
                self._pending = None


async def main() -> None:
    prefix = os.environ.get("CANARY_TOPIC_PREFIX", "")
    p = Projector(schema=projection_schema(), group_id=prefix + "projector",
                  batch_max=int(os.environ.get("CANARY_PROJECTOR_BATCH", "5000")))
    await serve(p, log, "projector", lambda: {"applied": p.applied})


if __name__ == "__main__":
    asyncio.run(main())
