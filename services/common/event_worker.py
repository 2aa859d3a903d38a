"""A small consume-handle-produce loop shared by the media workers.

Used by the TTS, recording and transcription workers (it lives here only
because the media services' files were scoped to their own packages; it has no
TTS specifics and can move to ``services/common``).

Delivery: at-least-once plus idempotence, as the design brief asks (Faust's
exactly-once is unreliable). Each output's id is derived from its input event's
id (:meth:`events.Envelope.caused`), so a re-run after a crash re-emits the
*same* ids and downstream consumers drop the duplicates. Offsets are committed
only after every output of a batch is acknowledged by the broker. The work
itself is idempotent too: renders, recordings and transcripts are cached by
content in the media store.

Partitions of a batch are handled concurrently (a call's events stay on one
partition, so per-call order holds); CPU work inside handlers runs in the
media pool, not on the loop.
"""

from __future__ import annotations

import asyncio
import os
from typing import Awaitable, Callable

from aiokafka import TopicPartition

from events import DecodeError, Envelope, decode, topics
from services.common.kafka import make_consumer, make_producer, publish
from services.common.service import serve as run_service

Handler = Callable[[Envelope], Awaitable[list[Envelope]]]


class EventWorker:
    """Consume ``voice.call.events`` in group ``name`` and run ``handler`` on each event."""

    def __init__(self, name: str, handler: Handler, *, topic: str | None = None,
                 group_id: str | None = None, handler_timeout_s: float = 300.0, log=None) -> None:
        self.name = name
        self.handler = handler
        self.topic = topic or topics.EVENTS
        prefix = os.environ.get("CANARY_TOPIC_PREFIX", "")
        self.group_id = group_id or prefix + name
        self.handler_timeout_s = handler_timeout_s
        self.stopping = asyncio.Event()
        self.handled = 0
        self.emitted = 0
        if log is None:
            from services.common.logging import get_logger

            log = get_logger(service=name)
        self.log = log

    async def start(self) -> None:
        """Connect producer and consumer."""
        self.producer = make_producer()
        await self.producer.start()
        self.consumer = make_consumer(self.topic, group_id=self.group_id,
                                      auto_offset_reset=os.environ.get("CANARY_MEDIA_OFFSET_RESET", "earliest"),
                                      max_poll_records=200)
        await self.consumer.start()
        self.log.info("worker started", topic=self.topic, group=self.group_id)

    async def stop(self) -> None:
        """Disconnect (uncommitted work is redone by the next owner)."""
        await self.consumer.stop()
        await self.producer.stop()

    async def _handle(self, raw: bytes | None) -> list[Envelope]:
        env = decode(raw)
        if isinstance(env, DecodeError):
            # The projector dead-letters bad events on this topic; doing it here too
            # would file each one once per worker.
            return []
        try:
            return await asyncio.wait_for(self.handler(env), self.handler_timeout_s)
        except Exception as exc:  # a handler bug must not wedge the partition
            self.log.exception("handler failed", type=env.type, call_id=env.call_id, error=str(exc))
            return []

    async def _partition(self, msgs) -> int:
        out = 0
        for m in msgs:
            results = await self._handle(m.value)
            for e in results:
                await publish(self.producer, self.topic, e)
            out += len(results)
        return out

    async def run_once(self, timeout_ms: int = 500) -> int:
        """Handle one fetched batch; returns the number of records seen."""
        batches = await self.consumer.getmany(timeout_ms=timeout_ms)
        if not batches:
            return 0
        counts = await asyncio.gather(*(self._partition(msgs) for msgs in batches.values()))
        self.emitted += sum(counts)
        seen = sum(len(m) for m in batches.values())
        self.handled += seen
        offsets = {TopicPartition(tp.topic, tp.partition): msgs[-1].offset + 1 for tp, msgs in batches.items() if msgs}
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # revoked by a rebalance: the next owner redoes it, ids dedupe
            self.log.warning("commit failed", error=str(exc))
        return seen

    async def run(self) -> None:
        """Loop until :attr:`stopping` is set."""
        while not self.stopping.is_set():
            await self.run_once()


async def serve(worker: EventWorker) -> None:
    """Run ``worker`` until SIGINT/SIGTERM."""
    await run_service(worker, worker.log, "worker", lambda: {"handled": worker.handled, "emitted": worker.emitted})


def carry_step(env: Envelope, data: dict) -> dict:
    """Copy correlation hints (``step``) from a request into its result."""
    if "step" in env.data and "step" not in data:
        data = {**data, "step": env.data["step"]}
    return data


def failed(env: Envelope, type_: str, data: dict, service: str) -> list[Envelope]:
    """A failure as an event on the log (the call's timeline shows why), plus an error log line."""
    from services.common.logging import get_logger

    get_logger(service=service).error(type_, call_id=env.call_id, **data)
    return [env.caused(type_, data)]
