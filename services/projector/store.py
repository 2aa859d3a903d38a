"""Postgres side of the projector: the rows of one batch, in the transaction that stores its offsets."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable

import asyncpg

from events import Envelope
from services.common import tracing
from services.common.consumer import Batch, PostgresTracking, Source
from services.common.consumer import Record as ConsumedRecord
from services.projector import calls

DDL = Path(__file__).with_name("projection.sql").read_text()
CALL_COLUMNS = list(calls.new_row(Envelope(type="call.queued", call_id="x", account_id="x",
                                           occurred_at="2024-01-01T00:00:00Z")).keys())
EVENT_COLUMNS = ["event_id", "call_id", "account_id", "type", "version", "occurred_at", "kafka_partition",
                 "kafka_offset", "causation_id", "correlation_id", "data", "traceparent"]
GATHER_COLUMNS = ["event_id", "call_id", "account_id", "status", "digits", "finished_on_key", "speech", "step",
                  "occurred_at"]
RECORDING_COLUMNS = ["id", "call_id", "account_id", "wav_ref", "mp3_ref", "duration_ms", "size_bytes", "sha256",
                     "channels", "created_at"]
_CALL_SELECT = ", ".join(CALL_COLUMNS)  # in CALL_COLUMNS' order, whatever the table's column order
# The types calls.gather_row / recording_row / transcription_row make a row of.
_ROW_TYPES = frozenset({"gather.completed", "gather.timeout", "recording.completed", "transcription.completed"})
_ts = calls.ts
TRANSCRIPTION_COLUMNS = ["recording_id", "call_id", "account_id", "text", "confidence", "segments", "language",
                         "created_at"]


def check_schema_name(schema: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", schema):
        raise ValueError(f"bad schema name {schema!r}")
    return schema


async def ensure_schema(conn: asyncpg.Connection, schema: str = "projection") -> None:
    """Create the projection tables in `schema` if missing (idempotent).

    Under a transaction-scoped advisory lock: `IF NOT EXISTS` does not stop two instances
    starting at once from both creating the schema (one fails on the catalog's unique key)."""
    ddl = DDL.replace("{schema}", check_schema_name(schema))
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('canary.projection:' || $1))", schema)
        await conn.execute(ddl)


@dataclass(slots=True)
class BatchResult:
    applied: int = 0
    duplicates: int = 0
    calls_touched: int = 0
    new_events: list[Envelope] = field(default_factory=list)


class ProjectionStore:
    """Applies batches of events to the projection tables of one schema.

    It is the handler of the consume-with-tracking block (``services.common.consumer``):
    the block opens the transaction, drops records below the stored offsets, dead-letters
    what cannot be read, stores the offsets in ``{schema}.offsets`` and isolates a record
    Postgres refuses; :meth:`handle` only writes the rows.
    """

    def __init__(self, conn: asyncpg.Connection | None, schema: str = "projection", consumer: str = "projector",
                 topic: str = "voice.call.events", until: datetime | None = None):
        self.conn = conn
        self.s = check_schema_name(schema)
        self.consumer = consumer
        self.topic = topic
        self.until = until  # a replay "as of": later events are skipped (their offsets still count)
        self._staged_on: asyncpg.Connection | None = None  # where the staging tables are committed
        self._made_on: asyncpg.Connection | None = None  # where a transaction last made them
        self.applied = 0

    def tracking(self, **kw) -> PostgresTracking:
        """The positions, in this schema's offsets table, on this store's connection."""
        return PostgresTracking(f"{self.s}.offsets", self.consumer, conn=self.conn, **kw)

    def source(self) -> Source:
        """Every event type of the log: whatever cannot be projected is dead-lettered."""
        return Source(self.topic)

    async def _stage(self) -> None:
        # Staging tables live per connection and empty themselves at commit. They are made
        # in a batch's transaction, so they only count as made once one commits (handle()).
        if self._staged_on is self.conn:
            return
        for name, table in (("stage_events", "call_events"), ("stage_calls", "calls")):
            await self.conn.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
            await self.conn.execute(
                f"CREATE TEMP TABLE {name} (LIKE {self.s}.{table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        self._made_on = self.conn

    async def offsets(self) -> dict[int, int]:
        """partition -> next offset to consume, as last committed with the data."""
        rows = await self.conn.fetch(
            f"SELECT kafka_partition, next_offset FROM {self.s}.offsets WHERE consumer = $1 AND topic = $2",
            self.consumer, self.topic)
        return {r["kafka_partition"]: r["next_offset"] for r in rows}

    async def handle(self, batch: Batch) -> None:
        """The block's handler: apply the batch's records in its transaction."""
        if batch.conn is not None:
            self.conn = batch.conn
        records = batch.records
        if self.until is not None:
            records = [r for r in records if calls.ts(r.env.occurred_at) <= self.until]
        # Each call's events continue its trace here too (export on; off this costs nothing).
        with tracing.batch("projector project", (r.env for r in records), **{"canary.batch_size": len(records)}):
            res = await self.apply(records)
        batch.after_commit(lambda conn=self.conn: self._committed(conn, res.applied))

    def _committed(self, conn: asyncpg.Connection, applied: int) -> None:
        if self._made_on is conn:  # this batch made the staging tables: they are there for good
            self._staged_on = conn
        self.applied += applied

    async def apply(self, records: list[ConsumedRecord]) -> BatchResult:
        """Write `records` (in the caller's transaction). An event id seen before (a producer
        retry) is skipped, so nothing is applied twice."""
        res = BatchResult()
        if not records:
            return res
        await self._stage()
        # Within one batch the same event id may appear twice; keep the first.
        seen: set[str] = set()
        uniq = [r for r in records if not ((i := r.env.id.lower()) in seen or seen.add(i))]
        envs = [r.env for r in uniq]
        times = [_ts(e.occurred_at) for e in envs]  # parsed once, for every table
        rows = [(e.id, e.call_id, e.account_id, e.type, e.version, at, r.partition, r.offset, e.causation_id,
                 e.correlation_id, e.data, e.traceparent) for r, e, at in zip(uniq, envs, times)]
        try:
            # Fast path: straight COPY. A duplicate id (a producer retry of an event we
            # already have) aborts it, and we take the careful path instead.
            async with self.conn.transaction():
                await self.conn.copy_records_to_table("call_events", schema_name=self.s, records=rows,
                                                      columns=EVENT_COLUMNS)
            new, new_times = envs, times
        except asyncpg.UniqueViolationError:
            await self.conn.copy_records_to_table("stage_events", records=rows, columns=EVENT_COLUMNS)
            inserted = {str(x["event_id"]) for x in await self.conn.fetch(
                f"INSERT INTO {self.s}.call_events SELECT * FROM stage_events"
                f" ON CONFLICT (event_id) DO NOTHING RETURNING event_id")}
            kept = [k for k, e in enumerate(envs) if e.id.lower() in inserted]
            new, new_times = [envs[k] for k in kept], [times[k] for k in kept]
        res.duplicates = len(records) - len(new)
        res.applied = len(new)
        res.new_events = new
        await self._apply_calls(new, new_times, res)
        await self._insert_rows(new, new_times)
        return res

    async def _apply_calls(self, new: list[Envelope], times: list[datetime], res: BatchResult) -> None:
        # Each call's events of the batch, in log order, folded over its stored row at once.
        by_call: dict[str, tuple[list[Envelope], list[datetime]]] = {}
        for env, at in zip(new, times):
            got = by_call.get(env.call_id)
            if got is None:
                by_call[env.call_id] = ([env], [at])
            else:
                got[0].append(env)
                got[1].append(at)
        if not by_call:
            return
        ids = list(by_call)
        current = {r["id"]: r for r in await self.conn.fetch(
            f"SELECT {_CALL_SELECT} FROM {self.s}.calls WHERE id = ANY($1::text[])", ids)}
        fold, columns = calls.fold, CALL_COLUMNS
        rows = []
        for i in ids:
            stored = current.get(i)
            row = fold(dict(zip(columns, stored)) if stored is not None else None, *by_call[i])
            rows.append(tuple([row[c] for c in columns]))
        await self.conn.copy_records_to_table("stage_calls", records=rows, columns=CALL_COLUMNS)
        await self.conn.execute(self._upsert_calls)
        res.calls_touched = len(ids)

    @property
    def _upsert_calls(self) -> str:
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in CALL_COLUMNS if c != "id")
        return (f"INSERT INTO {self.s}.calls ({', '.join(CALL_COLUMNS)}) SELECT {', '.join(CALL_COLUMNS)}"
                f" FROM stage_calls ON CONFLICT (id) DO UPDATE SET {sets}")

    async def _insert_rows(self, new: list[Envelope], times: list[datetime]) -> None:
        # Only a few types make rows of their own: one pass to find them.
        picked = [(e, at) for e, at in zip(new, times) if e.type in _ROW_TYPES]
        if not picked:
            return
        # Gathers are keyed by event id and these events are new: COPY cannot conflict.
        gathers = [r for r in (calls.gather_row(e, at) for e, at in picked) if r is not None]
        if gathers:
            await self.conn.copy_records_to_table("gathers", schema_name=self.s, columns=GATHER_COLUMNS,
                                                  records=[tuple(r[c] for c in GATHER_COLUMNS) for r in gathers])
        for fn, table, cols, key in (
            (calls.recording_row, "recordings", RECORDING_COLUMNS, "id"),
            (calls.transcription_row, "transcriptions", TRANSCRIPTION_COLUMNS, "recording_id"),
        ):
            rows = [r for r in (fn(e, at) for e, at in picked) if r is not None]
            if rows:
                ph = ", ".join(f"${i + 1}" for i in range(len(cols)))
                await self.conn.executemany(
                    f"INSERT INTO {self.s}.{table} ({', '.join(cols)}) VALUES ({ph})"
                    f" ON CONFLICT ({key}) DO NOTHING", [tuple(r[c] for c in cols) for r in rows])


def table_names() -> Iterable[str]:
    return ("calls", "call_events", "gathers", "recordings", "transcriptions")
