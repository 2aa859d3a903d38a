"""Consume with tracking: the one loop under the stream processors (projector, orchestrator,
telephony gateway), in the spirit of pyeventsourcing's ProcessApplication + tracking records.

A batch goes through three steps:

1. **Check** (:meth:`Processor.prepare`, CPU only): each record is decoded (``events.decode``
   never raises), its envelope checked (``id``, ``causation_id``, ``correlation_id`` are
   UUIDs, ``occurred_at`` is RFC 3339) and its payload validated against the catalog's
   model. What a consumer does not take is skipped; what it takes but cannot read is
   *rejected*: it goes to ``voice.dlq``, never to the handler.
2. **Process** (:meth:`Processor.process`): one transaction of the tracking store: lock the
   stored positions of the batch's partitions and drop records below them (a redelivery,
   or a zombie member's batch), hand the valid records to the handler, produce the DLQ
   records, write the next positions, await what the handler asked to finish before the
   commit (its outputs' acks), commit. Positions and state are durable together.
3. **Isolate failures.** A failure that is not the record's fault (lost connection,
   timeouts, Postgres outside its data classes, a retriable Kafka error: see
   :func:`is_transient`) retries the same batch with capped exponential backoff. Any
   other failure is a record's: the batch is split in two and each half processed on its
   own, down to the one record, which is dead-lettered with the reason (``handler_error``,
   ``data_error`` for a Postgres data error such as jsonb refusing ``\\u0000``) while the
   rest of the batch goes on. Bisection gives the same result as applying the records one
   by one and skipping those that fail, so a replay of the same log skips the same ones.

:class:`Consumer` is the Kafka edge around a :class:`Processor`: subscribe, seek to the
stored positions on every assignment, fetch (optionally the next batch while the current
one is written), commit Kafka's group offsets afterwards (for lag monitoring, or as the
positions themselves with :class:`KafkaTracking`).
"""

from __future__ import annotations

import asyncio
import time
import contextlib
import random
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncContextManager, Awaitable, Callable, Iterable, Protocol, Sequence

import asyncpg
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka import errors as kafka_errors
from pydantic import BaseModel

from events import DecodeError, Envelope, decode, decode_payload, topics
from services.common import metrics
from services.common.health import HEALTH
from services.common.kafka import dlq_key, dlq_record, make_consumer

Key = tuple[str, int]  # (topic, partition)

# --- checking one record -------------------------------------------------------------------

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# RFC 3339 date-time as every reader of the log parses it (datetime.fromisoformat): an upper
# case T and Z, an explicit offset (a naive time would not compare with the others).
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _envelope_error(env: Envelope, name: str, message: str, value: Any) -> DecodeError:
    return DecodeError("invalid_envelope", f"envelope field {name} {message}, not {_show(value)}", env.type,
                       ({"field": name, "code": "invalid_envelope", "message": message},))


def check_envelope(env: Envelope) -> DecodeError | None:
    """The envelope fields ``events.decode`` only checks for shape: ids are UUIDs, the time RFC 3339."""
    if not _UUID.fullmatch(env.id):
        return _envelope_error(env, "id", "must be a UUID", env.id)
    for name in ("causation_id", "correlation_id"):
        v = getattr(env, name)
        if v is not None and not (type(v) is str and _UUID.fullmatch(v)):
            return _envelope_error(env, name, "must be a UUID or null", v)
    at = env.occurred_at
    if not _RFC3339.fullmatch(at):
        return _envelope_error(env, "occurred_at", "must be an RFC 3339 time (2026-01-01T12:00:00Z)", at)
    try:
        datetime.fromisoformat(at)
    except ValueError as exc:
        return _envelope_error(env, "occurred_at", f"is not a valid time ({exc})", at)
    return None


def check(raw: bytes | None, *, payload: bool = True) -> tuple[Envelope, BaseModel | None] | DecodeError:
    """Decode, check the envelope and (with ``payload``) validate the data against the catalog."""
    env = decode(raw)
    if isinstance(env, DecodeError):
        return env
    err = check_envelope(env)
    if err is not None:
        return err
    if not payload:
        return env, None
    model = decode_payload(env)
    if isinstance(model, DecodeError):
        return model
    return env, model


# --- what a batch is made of ---------------------------------------------------------------


class Message(Protocol):
    """A consumed Kafka record (aiokafka's ConsumerRecord is one)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


@dataclass(slots=True)
class Record:
    """A valid record, handed to the handler."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    env: Envelope
    payload: BaseModel | None  # the catalog's model; None for a type the handler validates itself
    # The Kafka record's headers ((name, bytes) pairs) and timestamp (ms), for a handler that
    # authenticates its producers (the orchestrator's intake: docs/security.md).
    headers: tuple = ()
    timestamp: int | None = None

    @property
    def key(self) -> Key:
        return (self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        """The value of the last header called ``name`` (case-insensitive), or None."""
        found = None
        for k, v in self.headers:
            if isinstance(k, str) and k.lower() == name:
                found = v
        return found


@dataclass(slots=True)
class Rejected:
    """A record that goes to the DLQ instead of the handler, and why."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    error: DecodeError

    @property
    def key(self) -> Key:
        return (self.topic, self.partition)

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset, "code": self.error.code,
                "reason": self.error.reason, "type": self.error.type}


@dataclass(slots=True)
class Skipped:
    """A record of a type this consumer does not take: only its position counts."""

    topic: str
    partition: int
    offset: int

    @property
    def key(self) -> Key:
        return (self.topic, self.partition)


Item = Record | Rejected | Skipped


@dataclass(frozen=True, slots=True)
class Source:
    """A topic a consumer reads, and which of its records it takes."""

    topic: str
    types: frozenset[str] | None = None  # None: every type
    # Other types: dead-lettered (a command topic: nobody else will take them) or skipped
    # (the event log: other consumers take them).
    reject_others: bool = False
    # Types whose payload the handler validates itself (the envelope is still checked).
    unchecked: frozenset[str] = frozenset()

    def item(self, m: Message) -> Item:
        """Check one record: valid, rejected (with the reason) or skipped.

        On the event log, a record whose type header names a type this source does not take
        is skipped undecoded: most consumers take a few of the log's types, and decoding every
        record cost each of them more CPU than its own work. The header is checked against the
        payload's type for the records that are taken (a mismatch is rejected)."""
        hdr = None
        if self.types is not None and not self.reject_others:
            hdr = _type_header(m)
            if hdr is not None and hdr not in self.types:
                return Skipped(m.topic, m.partition, m.offset)
        env = decode(m.value)
        if isinstance(env, DecodeError):
            if env.type is not None and self.types is not None and env.type not in self.types \
                    and not self.reject_others:
                return Skipped(m.topic, m.partition, m.offset)
            return Rejected(m.topic, m.partition, m.offset, m.value, env)
        if self.types is not None and env.type not in self.types:
            if self.reject_others:
                return Rejected(m.topic, m.partition, m.offset, m.value,
                                DecodeError("unknown_command", f"{env.type} is not a command this consumer takes",
                                            env.type))
            return Skipped(m.topic, m.partition, m.offset)
        err = check_envelope(env)
        if err is not None:
            return Rejected(m.topic, m.partition, m.offset, m.value, err)
        if hdr is not None and hdr != env.type:
            return Rejected(m.topic, m.partition, m.offset, m.value,
                            DecodeError("invalid_envelope", f"type header {hdr!r} is not the payload's {env.type!r}",
                                        env.type))
        model = None
        if env.type not in self.unchecked:
            model = decode_payload(env)
            if isinstance(model, DecodeError):
                return Rejected(m.topic, m.partition, m.offset, m.value, model)
        return Record(m.topic, m.partition, m.offset, m.value, env, model,
                      tuple(getattr(m, "headers", None) or ()), getattr(m, "timestamp", None))


def _type_header(m: Message) -> str | None:
    for k, v in getattr(m, "headers", None) or ():
        if k == "type":
            try:
                return v.decode() if isinstance(v, (bytes, bytearray)) else None
            except UnicodeDecodeError:
                return None
    return None


# --- telling transient failures from the record's ------------------------------------------

# Postgres error classes that are about the data: data exception (22: bad text, jsonb
# refusing \u0000, out-of-range numbers), integrity constraint violation (23), program
# limit exceeded (54: an index row too large). Every other Postgres error (connection,
# transaction rollback, resources, operator intervention, a missing table...) is not the
# record's fault: retried.
_DATA_CLASSES = frozenset({"22", "23", "54"})
# OSErrors about a file are about what a record points at, not a connection.
_FILE_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


def is_transient(exc: BaseException) -> bool:
    """True for failures to retry with backoff (not the record's fault), by exception type."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "")[:2] not in _DATA_CLASSES
    if isinstance(exc, asyncpg.InterfaceError):
        # Client side: "connection is closed", "another operation is in progress"... but an
        # argument asyncpg cannot encode (an id that is not a UUID) is the record's.
        return not isinstance(exc, asyncpg.exceptions._base.DataError)
    if isinstance(exc, OSError):  # ConnectionError, socket errors
        return not isinstance(exc, _FILE_ERRORS)
    if isinstance(exc, kafka_errors.KafkaError):
        return bool(exc.retriable) or isinstance(exc, (kafka_errors.KafkaConnectionError,
                                                       kafka_errors.KafkaTimeoutError))
    return False


def rejection(exc: BaseException, record: Record, *, code: str = "handler_error") -> DecodeError:
    """Why a record the handler failed on is dead-lettered: ``data_error`` when Postgres refused
    it, else `code`."""
    if isinstance(exc, asyncpg.PostgresError):
        return DecodeError("data_error", f"Postgres refused the record ({exc.sqlstate}): {exc}"[:1000],
                           record.env.type, ({"sqlstate": exc.sqlstate, "message": str(exc)[:1000],
                                              "detail": getattr(exc, "detail", None)},))
    return DecodeError(code, f"{type(exc).__name__}: {exc}"[:1000], record.env.type,
                       ({"exception": type(exc).__name__, "message": str(exc)[:1000]},))


@dataclass(slots=True)
class Backoff:
    """Capped exponential backoff with jitter, for transient failures."""

    initial: float = 0.1
    factor: float = 2.0
    cap: float = 10.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        base = min(self.cap, self.initial * self.factor ** max(0, attempt - 1))
        return base * (1 + random.uniform(-self.jitter, self.jitter))


class Stopped(Exception):
    """The consumer is stopping while it waits to retry: the batch is left to the next owner."""


async def retry_transient(fn: Callable[[], Awaitable[Any]], *, what: str, log: Any = None,
                          backoff: Backoff | None = None, stopping: asyncio.Event | None = None,
                          recover: Callable[[], Awaitable[None]] | None = None) -> Any:
    """``await fn()``, retrying transient failures with backoff; any other failure is raised."""
    backoff = backoff or Backoff()
    attempt = 0
    while True:
        try:
            result = await fn()
            if attempt:
                HEALTH.worked(what)
            return result
        except Exception as exc:
            if not is_transient(exc):
                raise
            attempt += 1
            await _pause(exc, attempt, what=what, log=log, backoff=backoff, stopping=stopping)
            if recover is not None:
                with contextlib.suppress(Exception):
                    await recover()


async def _pause(exc: BaseException, attempt: int, *, what: str, log: Any, backoff: Backoff,
                 stopping: asyncio.Event | None) -> None:
    delay = backoff.delay(attempt)
    HEALTH.failed(what, f"{type(exc).__name__}: {exc}")
    if log is not None:
        (log.warning if attempt < 5 else log.error)(
            f"{what} failed, retrying", attempt=attempt, retry_in_s=round(delay, 2),
            error=f"{type(exc).__name__}: {exc}"[:500])
    if stopping is None:
        await asyncio.sleep(delay)
        return
    if stopping.is_set():
        raise Stopped(what) from exc
    try:
        await asyncio.wait_for(stopping.wait(), delay)
    except asyncio.TimeoutError:
        return
    raise Stopped(what) from exc


# --- where positions live ------------------------------------------------------------------


class Tracking(Protocol):
    """Where a consumer's positions are stored, with the state its handler writes."""

    conn: Any  # the connection the handler writes on, in the transaction (None: none)
    # False: there is no rollback, so a handler that succeeded is not run again when a later
    # step of the batch (its DLQ records) fails and is retried.
    transactional: bool

    async def load(self) -> dict[Key, int] | None:
        """Stored next offsets (None: Kafka's committed offsets are the positions)."""

    def transaction(self) -> AsyncContextManager[Any]: ...

    async def fence(self, keys: set[Key]) -> dict[Key, int]:
        """In the transaction: the stored positions of `keys`, locked until the commit."""

    async def save(self, upto: dict[Key, int]) -> None:
        """In the transaction: the next offsets."""

    async def recover(self) -> None:
        """After a transient failure: reconnect if the connection is gone."""


_TABLE = re.compile(r"(?:[a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*")


class PostgresTracking:
    """Positions in a Postgres table ``(consumer, topic, kafka_partition, next_offset)``, written
    in the handler's transaction: the tracking records of pyeventsourcing."""

    transactional = True

    def __init__(self, table: str, consumer: str, *, conn: asyncpg.Connection | None = None,
                 connect: Callable[[], Awaitable[asyncpg.Connection]] | None = None,
                 on_connect: Callable[[asyncpg.Connection], Any] | None = None):
        if not _TABLE.fullmatch(table):
            raise ValueError(f"bad table name {table!r}")
        self.table, self.consumer = table, consumer
        self.conn = conn
        self._connect, self._on_connect = connect, on_connect

    async def start(self) -> asyncpg.Connection:
        if self.conn is None or self.conn.is_closed():
            if self._connect is None:
                raise RuntimeError("PostgresTracking has no connection and no way to connect")
            self.conn = await self._connect()
            if self._on_connect is not None:
                res = self._on_connect(self.conn)
                if asyncio.iscoroutine(res):
                    await res
        return self.conn

    async def recover(self) -> None:
        if self.conn is None or self.conn.is_closed():
            await self.start()

    async def close(self) -> None:
        if self.conn is not None and not self.conn.is_closed():
            await self.conn.close()

    async def load(self) -> dict[Key, int]:
        rows = await self.conn.fetch(
            f"SELECT topic, kafka_partition, next_offset FROM {self.table} WHERE consumer = $1", self.consumer)
        return {(r["topic"], r["kafka_partition"]): r["next_offset"] for r in rows}

    def transaction(self) -> AsyncContextManager[Any]:
        return self.conn.transaction()

    async def fence(self, keys: set[Key]) -> dict[Key, int]:
        ordered = sorted(keys)
        rows = await self.conn.fetch(
            f"SELECT o.topic, o.kafka_partition, o.next_offset FROM {self.table} o"
            f" JOIN unnest($2::text[], $3::int[]) AS k(topic, kafka_partition)"
            f" ON o.topic = k.topic AND o.kafka_partition = k.kafka_partition"
            f" WHERE o.consumer = $1 ORDER BY o.topic, o.kafka_partition FOR UPDATE OF o",
            self.consumer, [t for t, _ in ordered], [p for _, p in ordered])
        return {(r["topic"], r["kafka_partition"]): r["next_offset"] for r in rows}

    async def save(self, upto: dict[Key, int]) -> None:
        await self.conn.executemany(
            f"INSERT INTO {self.table} (consumer, topic, kafka_partition, next_offset) VALUES ($1, $2, $3, $4)"
            f" ON CONFLICT (consumer, topic, kafka_partition)"
            f" DO UPDATE SET next_offset = GREATEST({self.table}.next_offset, EXCLUDED.next_offset)",
            [(self.consumer, t, p, o) for (t, p), o in upto.items()])


class KafkaTracking:
    """Positions are Kafka's committed group offsets, committed in the background (see
    :class:`KafkaCommits`) after each batch: for a
    handler whose effects are idempotent by themselves (at-least-once)."""

    conn = None
    transactional = False

    async def load(self) -> None:
        return None

    def transaction(self) -> AsyncContextManager[Any]:
        return contextlib.nullcontext()

    async def fence(self, keys: set[Key]) -> dict[Key, int]:
        return {}

    async def save(self, upto: dict[Key, int]) -> None:
        pass

    async def recover(self) -> None:
        pass


# --- where rejected records go -------------------------------------------------------------


class DeadLetters(Protocol):
    async def send(self, rejected: list[Rejected], consumer: str) -> None: ...


class KafkaDeadLetters:
    """voice.dlq: one record per rejected message, keyed by its source position, acked before
    the position that skips it is stored."""

    def __init__(self, producer: Any, topic: str | None = None):
        self.producer, self._topic = producer, topic

    async def send(self, rejected: list[Rejected], consumer: str) -> None:
        topic = self._topic or topics.dlq()
        futs = [await self.producer.send(topic, dlq_record(
            r.error.reason, r.error.code, source_topic=r.topic, partition=r.partition, offset=r.offset, raw=r.value,
            type=r.error.type, errors=r.error.errors, consumer=consumer), key=dlq_key(r.topic, r.partition, r.offset))
            for r in rejected]
        if futs:
            await asyncio.gather(*futs)


class CollectedDeadLetters:
    """Keeps the rejected records (by source position) instead of producing them: for a replay."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, int, int], Rejected] = {}

    async def send(self, rejected: list[Rejected], consumer: str) -> None:
        for r in rejected:
            self.records[(r.topic, r.partition, r.offset)] = r

    def sorted(self) -> list[Rejected]:
        return [self.records[k] for k in sorted(self.records)]


# --- the processor -------------------------------------------------------------------------


class Batch:
    """What the handler gets: the valid records, the transaction's connection, and two hooks."""

    __slots__ = ("records", "conn", "rejected", "_before_commit", "_after_commit")

    def __init__(self, records: list[Record], conn: Any):
        self.records, self.conn = records, conn
        self.rejected: list[Rejected] = []
        self._before_commit: list[Awaitable[Any]] = []
        self._after_commit: list[Callable[[], Any]] = []

    def reject(self, record: Record, error: DecodeError) -> None:
        """Dead-letter `record` too (the handler still decides what else it does with it)."""
        self.rejected.append(Rejected(record.topic, record.partition, record.offset, record.value, error))

    def before_commit(self, aw: Awaitable[Any]) -> None:
        """Await `aw` (say, the acks of the outputs, already on their way) after the positions are
        written, before the commit. It runs from now on; if the batch fails it is cancelled."""
        self._before_commit.append(asyncio.ensure_future(aw))

    def after_commit(self, fn: Callable[[], Any]) -> None:
        """Call `fn` once the batch is committed (not if it is rolled back and retried or split)."""
        self._after_commit.append(fn)

    async def _settle(self) -> None:
        """Let what the handler started finish, whatever happens to the transaction."""
        pending, self._before_commit = self._before_commit, []
        for fut in pending:
            fut.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


Handler = Callable[[Batch], Awaitable[None]]


@dataclass(slots=True)
class Stats:
    handled: int = 0  # records given to the handler and committed
    rejected: int = 0  # dead-lettered
    skipped: int = 0  # of types this consumer does not take
    retries: int = 0  # transient failures retried
    splits: int = 0  # batches split to find a failing record


@dataclass(slots=True)
class _Handled:
    """A batch the handler succeeded on, kept across retries when nothing rolls it back."""

    rejected: list[Rejected] | None = None  # None: not handled yet


class _RecordFailed(Exception):
    """The handler failed on a batch (not transiently): find the record."""

    def __init__(self, exc: BaseException):
        super().__init__(str(exc))
        self.exc = exc


class Processor:
    """Check, process and track batches for one consumer; see the module docstring."""

    def __init__(self, name: str, sources: Sequence[Source], handler: Handler, tracking: Tracking,
                 dead_letters: DeadLetters, *, log: Any = None, backoff: Backoff | None = None,
                 stopping: asyncio.Event | None = None,
                 on_assigned: Callable[[set[TopicPartition]], Any] | None = None):
        self.name = name  # the consumer, as DLQ records and logs name it
        self.on_assigned = on_assigned  # told each new assignment (a rebalance's end), before the seeks
        self.sources = {s.topic: s for s in sources}
        self.handler, self.tracking, self.dead_letters = handler, tracking, dead_letters
        self.log, self.backoff = log, backoff or Backoff()
        self.stopping = stopping or asyncio.Event()
        self.positions: dict[Key, int] = {}  # next offset known to be stored, per partition
        self.lock = asyncio.Lock()  # one batch at a time; a rebalance's load waits for it
        self.stats = Stats()

    def prepare(self, messages: Iterable[Message]) -> list[Item]:
        """Check each record (CPU only; may run while the previous batch is written)."""
        out: list[Item] = []
        positions = self.positions
        for m in messages:
            if m.offset < positions.get((m.topic, m.partition), 0):
                continue  # already stored: a fetch buffered before a seek
            src = self.sources.get(m.topic)
            out.append(src.item(m) if src is not None else Skipped(m.topic, m.partition, m.offset))
        return out

    async def load(self) -> dict[Key, int] | None:
        """The stored positions (on an assignment), after the batch being written."""
        async with self.lock:
            stored = await retry_transient(self.tracking.load, what=f"{self.name}: loading positions", log=self.log,
                                           backoff=self.backoff, stopping=self.stopping,
                                           recover=self.tracking.recover)
            if stored is not None:
                self.positions = dict(stored)
            return stored

    async def process(self, items: list[Item]) -> dict[Key, int]:
        """Process one prepared batch; returns the positions stored (partition -> next offset)."""
        async with self.lock:
            items = [i for i in items if i.offset >= self.positions.get(i.key, 0)]
            if not items:
                return {}
            t0 = time.perf_counter()
            await self._run(items)
            metrics.BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - t0)
            return _upto(items)

    async def _run(self, items: list[Item]) -> None:
        attempt = 0
        done = _Handled()
        while True:
            try:
                await self._commit(items, done)
                if attempt:
                    HEALTH.worked(f"{self.name}: batch")
                return
            except _RecordFailed as failed:
                records = [i for i in items if type(i) is Record]
                if not records:  # nothing to blame (the commit of DLQ records and positions): retry
                    attempt += 1
                    self.stats.retries += 1
                    await _pause(failed.exc, attempt, what=f"{self.name}: batch", log=self.log,
                                 backoff=self.backoff, stopping=self.stopping)
                    with contextlib.suppress(Exception):
                        await self.tracking.recover()
                    continue
                if len(records) > 1:
                    self.stats.splits += 1
                    cut = items.index(records[len(records) // 2])
                    await self._run(items[:cut])
                    await self._run(items[cut:])
                    return
                (record,) = records
                error = rejection(failed.exc, record)
                if self.log is not None:
                    self.log.warning("record rejected to dlq", consumer=self.name, code=error.code,
                                     reason=error.reason, type=record.env.type, call_id=record.env.call_id,
                                     topic=record.topic, partition=record.partition, offset=record.offset)
                items = [Rejected(i.topic, i.partition, i.offset, i.value, error) if i is record else i
                         for i in items]
                done = _Handled()
            except Stopped:
                raise
            except Exception as exc:  # transient, or not the records' fault: same batch again
                attempt += 1
                self.stats.retries += 1
                await _pause(exc, attempt, what=f"{self.name}: batch", log=self.log, backoff=self.backoff,
                             stopping=self.stopping)
                with contextlib.suppress(Exception):
                    await self.tracking.recover()

    async def _commit(self, items: list[Item], done: "_Handled") -> None:
        t = self.tracking
        batch: Batch | None = None
        stage = "tracking"
        try:
            async with t.transaction():
                stored = await t.fence({i.key for i in items})
                fresh = [i for i in items if i.offset >= stored.get(i.key, 0)] if stored else items
                records = [i for i in fresh if type(i) is Record]
                batch = Batch(records, t.conn)
                stage = "handler"
                if done.rejected is not None:  # handled before, without a rollback: not again
                    batch.rejected = list(done.rejected)
                elif records:
                    await self.handler(batch)
                    if not t.transactional:
                        done.rejected = list(batch.rejected)
                stage = "dead_letters"
                rejected = [i for i in fresh if type(i) is Rejected] + batch.rejected
                if rejected:
                    await self.dead_letters.send(rejected, self.name)
                stage = "tracking"
                upto = _upto(items)
                await t.save(upto)
                stage = "handler"  # the outputs' acks, then the commit itself
                for fut in batch._before_commit:
                    await fut
                batch._before_commit.clear()
                stage = "commit"
        except (asyncio.CancelledError, Stopped):
            raise
        except Exception as exc:
            if batch is not None:
                await batch._settle()
            if is_transient(exc) or stage not in ("handler", "commit"):
                raise
            raise _RecordFailed(exc) from exc
        self.positions.update(upto)
        for fn in batch._after_commit:
            fn()
        self.stats.handled += len(records)
        self.stats.rejected += len(rejected)
        self.stats.skipped += sum(1 for i in fresh if type(i) is Skipped)
        for r in rejected:
            if self.log is not None and r.error.code not in ("handler_error", "data_error"):  # those were logged
                self.log.warning("record rejected to dlq", consumer=self.name, code=r.error.code,
                                 reason=r.error.reason, type=r.error.type, topic=r.topic, partition=r.partition,
                                 offset=r.offset)


def _upto(items: Iterable[Item]) -> dict[Key, int]:
    upto: dict[Key, int] = {}
    for i in items:
        k = i.key
        if i.offset + 1 > upto.get(k, 0):
            upto[k] = i.offset + 1
    return upto


# --- the Kafka edge ------------------------------------------------------------------------


class _SeekToStored(ConsumerRebalanceListener):
    """On every assignment, seek to the positions stored with the state (else the beginning).

    Kafka's committed offsets may be behind them (they are written after), so they are never
    trusted by a Postgres-tracked consumer. The load waits for the batch being written.
    """

    def __init__(self, owner: "Consumer"):
        self.owner = owner

    async def on_partitions_revoked(self, revoked):
        commits = getattr(self.owner, "_commits", None)
        if commits is not None:  # what this member did counts before the next owner starts
            await commits.flush()

    async def on_partitions_assigned(self, assigned):
        if self.owner.processor.on_assigned is not None:
            self.owner.processor.on_assigned(set(assigned))
        stored = await self.owner.processor.load()
        if stored is None:  # Kafka tracking: the committed offsets are the positions
            return
        consumer = self.owner.consumer
        for tp in assigned:
            off = stored.get((tp.topic, tp.partition))
            if off is not None:
                consumer.seek(tp, off)
            else:
                await consumer.seek_to_beginning(tp)


COMMIT_INTERVAL_S = 0.5


@dataclass(slots=True)
class KafkaCommits:
    """Kafka group commits in the background, at most one per `interval` (never awaited by a batch).

    A commit is a broker write (to ``__consumer_offsets``): one per batch cost the broker
    more CPU per call than any service (bench/calls_e2e.py). What a commit that has not
    happened yet costs is a redelivery after a crash or rebalance, which every consumer
    here absorbs (positions in Postgres, or idempotent handlers and derived ids). The
    latest offsets are flushed when partitions are revoked and on close.
    """

    consumer: Any
    log: Any
    interval: float = COMMIT_INTERVAL_S
    offsets: dict[Key, int] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None

    def note(self, upto: dict[Key, int]) -> None:
        for k, o in upto.items():
            if o > self.offsets.get(k, 0):
                self.offsets[k] = o
        self.wake.set()
        if self.task is None:
            self.task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            await self.flush()
            await asyncio.sleep(self.interval)

    async def flush(self) -> None:
        offsets, self.offsets = self.offsets, {}
        if not offsets:
            return
        try:
            await self.consumer.commit({TopicPartition(t, p): o for (t, p), o in offsets.items()})
        except Exception as exc:  # a rebalance revoked the partitions meanwhile: harmless
            if self.log is not None:
                self.log.debug("kafka commit skipped", error=str(exc) or type(exc).__name__)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
            self.task = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 5)


class Consumer:
    """Subscribe `processor`'s sources in `group_id` and feed it batches until stopped."""

    def __init__(self, processor: Processor, *, group_id: str, batch_max: int = 1000, pipeline: bool = False,
                 log: Any = None, **consumer_opts: Any):
        self.processor, self.group_id = processor, group_id
        self.batch_max, self.pipeline = batch_max, pipeline
        self.log = log if log is not None else processor.log
        self.stopping = processor.stopping
        self._opts = consumer_opts
        self._pending: asyncio.Task | None = None
        self._fetch_failures = 0

    async def start(self) -> None:
        self.consumer = make_consumer(group_id=self.group_id, **self._opts)
        self.consumer.subscribe(list(self.processor.sources), listener=_SeekToStored(self))
        await self.consumer.start()
        self._commits = KafkaCommits(self.consumer, self.log)
        metrics.watch_consumer(self)

    async def stop(self) -> None:
        if self._pending is not None:
            with contextlib.suppress(BaseException):
                await self._pending
            self._pending = None
        await self._commits.close()
        await self.consumer.stop()

    async def fetch(self, timeout_ms: int = 500) -> list[Item]:
        """One fetched batch, checked."""
        try:
            batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=self.batch_max)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._fetch_failures += 1
            await _pause(exc, self._fetch_failures, what=f"{self.processor.name}: fetch", log=self.log,
                         backoff=self.processor.backoff, stopping=self.stopping)
            return []
        if self._fetch_failures:
            HEALTH.worked(f"{self.processor.name}: fetch")
        self._fetch_failures = 0
        return self.processor.prepare(m for msgs in batches.values() for m in msgs)

    async def _process(self, items: list[Item]) -> int:
        upto = await self.processor.process(items)
        if upto:
            self._commits.note(upto)
        return len(items)

    async def run_once(self, timeout_ms: int = 500) -> int:
        """Fetch and process one batch; returns the number of records it had."""
        items = await self.fetch(timeout_ms)
        return await self._process(items) if items else 0

    async def run(self) -> None:
        """Until stopped; with `pipeline`, the next batch is fetched and checked while one is written."""
        try:
            while not self.stopping.is_set():
                HEALTH.alive()
                items = await self.fetch(200 if self._pending is not None else 500)
                if self._pending is not None:
                    pending, self._pending = self._pending, None
                    await pending
                if not items:
                    continue
                if self.pipeline:
                    self._pending = asyncio.create_task(self._process(items))
                else:
                    await self._process(items)
        except Stopped:
            pass
        finally:
            if self._pending is not None:
                pending, self._pending = self._pending, None
                with contextlib.suppress(Stopped):
                    await pending
