"""The projector: voice.call.events -> Postgres projections, exactly-once in effect.

Built on the consume-with-tracking block (``services.common.consumer``): positions are
owned by Postgres (the offsets table, written in the same transaction as the rows), not
by Kafka's group commits, and on every partition assignment the consumer seeks to the
stored position. A crash anywhere replays at most the uncommitted batch, which the
block's in-transaction fence recognises as already applied. An event that cannot be
read, or that Postgres refuses, is dead-lettered and the projector goes on.
"""

from __future__ import annotations

import asyncio
import gc

from events import topics
from services.common import db
from services.common.config import projection_schema, settings
from services.common.consumer import Consumer, KafkaDeadLetters, Processor
from services.common.kafka import make_producer
from services.common.logging import configure
from services.common.service import serve
from services.projector.store import ProjectionStore, ensure_schema

log = configure("projector")

# The young generations' thresholds while a projector runs. A batch's records (envelope, data,
# payload, record: several tracked objects each) live until the batch is written, two batches
# at a time when pipelined. With CPython's defaults (700, 10, 10) they outlive both young
# generations and are promoted to the oldest, whose collections scan the whole heap: that was
# ~40 % of the projector's CPU (bench/projector.py). With these they die young.
GC_THRESHOLDS = (10_000, 100)


def tune_gc() -> None:
    """Raise (never lower) the process's young-generation GC thresholds to GC_THRESHOLDS."""
    t0, t1, t2 = gc.get_threshold()
    if t0:  # 0: collection is off, leave it so
        gc.set_threshold(max(t0, GC_THRESHOLDS[0]), max(t1, GC_THRESHOLDS[1]), t2)


async def _connect():
    conn = await db.connect()
    await db.init_connection(conn)
    return conn


class Projector:
    def __init__(self, schema: str = "projection", group_id: str = "projector", topic: str | None = None,
                 batch_max: int = 5000):
        self.schema = schema
        self.group_id = group_id
        self.topic = topic or topics.events()
        self.batch_max = batch_max
        self.stopping = asyncio.Event()

    @property
    def applied(self) -> int:
        return self.store.applied

    async def start(self) -> None:
        tune_gc()
        self.store = ProjectionStore(None, self.schema, consumer=self.group_id, topic=self.topic)
        self.tracking = self.store.tracking(connect=_connect)
        await self.tracking.start()
        self.store.conn = self.tracking.conn
        await ensure_schema(self.tracking.conn, self.schema)
        self.producer = make_producer()
        await self.producer.start()
        self.processor = Processor("projector", [self.store.source()], self.store.handle, self.tracking,
                                   KafkaDeadLetters(self.producer), log=log, stopping=self.stopping)
        # Pipelined: batch N+1 is fetched and checked while batch N is written.
        self.consumer = Consumer(self.processor, group_id=self.group_id, batch_max=self.batch_max, pipeline=True)
        await self.consumer.start()
        log.info("projector started", topic=self.topic, schema=self.schema)

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()
        await self.tracking.close()

    async def run_once(self, timeout_ms: int = 500) -> int:
        """Consume and apply one batch; returns the number of records seen."""
        return await self.consumer.run_once(timeout_ms)

    async def run(self) -> None:
        await self.consumer.run()


async def main() -> None:
    p = Projector(schema=projection_schema(), group_id=topics.scoped("projector"),
                  batch_max=settings().projector_batch)
    await serve(p, log, "projector", lambda: {"applied": p.applied, "rejected": p.processor.stats.rejected})


if __name__ == "__main__":
    asyncio.run(main())
