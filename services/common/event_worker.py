"""A small consume-handle-produce loop shared by the media workers.

Used by the TTS, recording and transcription workers. Stateless, so no positions in
Postgres: it shares the check / dead-letter / retry part of the consume-with-tracking
block (``services.common.consumer``) and commits Kafka's group offsets.

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
from typing import Any, Awaitable, Callable, Collection

from events import Envelope, encode, topics
from services.common.config import settings
from services.common.consumer import (Backoff, KafkaCommits, KafkaDeadLetters, Record, Rejected, Skipped, Source, Stopped,
                                      is_transient, rejection, retry_transient)
from services.common.health import HEALTH
from services.common.kafka import make_consumer, make_producer, publish, type_headers
from services.common import tracing
from services.common.service import serve as run_service

Handler = Callable[[Envelope], Awaitable[list[Envelope]]]


class HandlerTimeout(Exception):
    """The handler took longer than the worker allows for one event."""


class EventWorker:
    """Consume ``voice.call.events`` in group ``name`` and run ``handler`` on each event.

    Records are checked as the stream processors check them (``services.common.consumer``):
    a record of a type the worker takes that cannot be read, that the handler fails on or
    whose handler times out goes to voice.dlq with the reason, and the worker goes on;
    a transient failure (connection, timeout inside the handler) is retried with backoff.
    ``types`` are the event types the handler takes (default: the handler's ``types``
    attribute, else every type).

    Two optional hooks of the handler: ``timeout_for(env) -> float | None`` is the time limit
    of one event (default ``handler_timeout_s``; the transcription worker scales it with the
    audio's duration), and ``on_timeout(env, exc) -> list[Envelope]`` the events to publish
    when an event exceeds it (its ``*.failed``), besides the ``handler_timeout`` DLQ record,
    so the call's timeline says why nothing came.
    """

    def __init__(self, name: str, handler: Handler, *, topic: str | None = None,
                 group_id: str | None = None, handler_timeout_s: float = 300.0, log=None,
                 types: Collection[str] | None = None) -> None:
        self.name = name
        self.handler = handler
        self.topic = topic or topics.events()
        self.group_id = group_id or topics.scoped(name)
        self.handler_timeout_s = handler_timeout_s
        types = types if types is not None else getattr(handler, "types", None)
        self.source = Source(self.topic, types=frozenset(types) if types is not None else None)
        self.backoff = Backoff()
        self.stopping = asyncio.Event()
        self.handled = 0
        self.emitted = 0
        self.rejected = 0
        if log is None:
            from services.common.logging import get_logger

            log = get_logger(service=name)
        self.log = log

    async def start(self) -> None:
        """Connect producer and consumer."""
        self.producer = make_producer()
        await self.producer.start()
        self.dead_letters = KafkaDeadLetters(self.producer)
        self.consumer = make_consumer(self.topic, group_id=self.group_id,
                                      auto_offset_reset=settings().media.offset_reset, max_poll_records=200)
        await self.consumer.start()
        self.commits = KafkaCommits(self.consumer, self.log)
        self.log.info("worker started", topic=self.topic, group=self.group_id)

    async def stop(self) -> None:
        """Disconnect (uncommitted work is redone by the next owner)."""
        await self.commits.close()
        await self.consumer.stop()
        await self.producer.stop()

    async def _reject(self, r: Rejected) -> None:
        self.rejected += 1
        self.log.warning("record rejected to dlq", consumer=self.name, code=r.error.code, reason=r.error.reason,
                         type=r.error.type, topic=r.topic, partition=r.partition, offset=r.offset)
        await retry_transient(lambda: self.dead_letters.send([r], self.name), what=f"{self.name}: dead letter",
                              log=self.log, backoff=self.backoff, stopping=self.stopping)

    def _timeout_for(self, env: Envelope) -> float:
        fn = getattr(self.handler, "timeout_for", None)
        limit = fn(env) if fn is not None else None
        return self.handler_timeout_s if limit is None else float(limit)

    @property
    def trace_name(self) -> str:
        return self.name

    async def _run_handler(self, env: Envelope) -> list[Envelope]:
        limit_s = self._timeout_for(env)
        try:
            async with asyncio.timeout(limit_s) as limit:
                return await self.handler(env)
        except TimeoutError:
            if limit.expired():  # ours, not a timeout inside the handler (that one is transient)
                raise HandlerTimeout(f"no answer within {limit_s:g} s") from None
            raise

    async def _handle(self, m) -> list[Envelope]:
        item = self.source.item(m)
        if type(item) is Skipped:
            return []
        if type(item) is Rejected:
            await self._reject(item)
            return []
        assert type(item) is Record
        with tracing.handling(item.env, f"{self.name} handle"):  # its log lines carry the trace
            return await self._handle_record(item)

    async def _handle_record(self, item: Record) -> list[Envelope]:
        try:
            return await retry_transient(lambda: self._run_handler(item.env), what=f"{self.name}: handler",
                                         log=self.log, backoff=self.backoff, stopping=self.stopping)
        except Stopped:
            raise
        except Exception as exc:  # the record's (retry_transient raises no other): it must not wedge the partition
            timed_out = isinstance(exc, HandlerTimeout)
            error = rejection(exc, item, code="handler_timeout" if timed_out else "handler_error")
            await self._reject(Rejected(item.topic, item.partition, item.offset, item.value, error))
            on_timeout = getattr(self.handler, "on_timeout", None) if timed_out else None
            return list(on_timeout(item.env, exc)) if on_timeout is not None else []

    async def _partition(self, msgs) -> int:
        """Handle a partition's records in order; their results are sent as they come and
        the acks awaited once, before the offsets are committed (one wait per batch, not
        per result: 7.7x the results/s of waiting per result, see bench/media_workers.py)."""
        sent: list[tuple[Envelope, asyncio.Future]] = []
        for m in msgs:
            for e in await self._handle(m):
                fut = await retry_transient(lambda e=e: self.producer.send(self.topic, encode(e), key=e.call_id.encode(),
                                                                                headers=type_headers(e)),
                                            what=f"{self.name}: publish", log=self.log, backoff=self.backoff,
                                            stopping=self.stopping)
                sent.append((e, fut))
        for e, fut in sent:
            try:
                await fut
            except Exception as exc:  # noqa: BLE001 - a lost ack: send that one again (ids dedupe)
                if not is_transient(exc):
                    raise
                await retry_transient(lambda e=e: publish(self.producer, self.topic, e), what=f"{self.name}: publish",
                                      log=self.log, backoff=self.backoff, stopping=self.stopping)
        return len(sent)

    async def run_once(self, timeout_ms: int = 500) -> int:
        """Handle one fetched batch; returns the number of records seen."""
        batches = await self.consumer.getmany(timeout_ms=timeout_ms)
        if not batches:
            return 0
        counts = await asyncio.gather(*(self._partition(msgs) for msgs in batches.values()))
        self.emitted += sum(counts)
        seen = sum(len(m) for m in batches.values())
        self.handled += seen
        # Committed in the background, at most twice a second: a crash redoes at most that
        # much (renders and transcripts are cached by content, ids dedupe downstream).
        self.commits.note({(tp.topic, tp.partition): msgs[-1].offset + 1 for tp, msgs in batches.items() if msgs})
        return seen

    async def run(self) -> None:
        """Loop until :attr:`stopping` is set."""
        try:
            while not self.stopping.is_set():
                HEALTH.alive()
                await self.run_once()
        except Stopped:
            pass


async def serve(worker: EventWorker) -> None:
    """Run ``worker`` until SIGINT/SIGTERM."""
    await run_service(worker, worker.log, "worker", lambda: {"handled": worker.handled, "emitted": worker.emitted,
                                                              "rejected": worker.rejected})


async def with_retries(fn: Callable[[], Awaitable[Any]], *, what: str, retries: int | None = None,
                       backoff: Backoff | None = None, log=None) -> Any:
    """``await fn()``; a transient failure (:func:`services.common.consumer.is_transient`) is
    retried up to ``retries`` times (default ``settings().media.retries``) with capped
    exponential backoff, then raised: the handler turns it into its ``*.failed`` event."""
    retries = settings().media.retries if retries is None else retries
    backoff = backoff or Backoff()
    attempt = 0
    while True:
        try:
            return await fn()
        except Exception as exc:
            if not is_transient(exc) or attempt >= retries:
                raise
            attempt += 1
            delay = backoff.delay(attempt)
            if log is not None:
                log.warning(f"{what} failed, retrying", attempt=attempt, retry_in_s=round(delay, 2),
                            error=f"{type(exc).__name__}: {exc}"[:500])
            await asyncio.sleep(delay)


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
