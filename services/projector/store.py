"""Postgres side of the projector: one transaction per batch, offsets included."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import asyncpg
import orjson

from events import Envelope
from services.projector import calls

DDL = Path(__file__).with_name("projection.sql").read_text()
CALL_COLUMNS = list(calls.new_row(Envelope(type="call.queued", call_id="x", account_id="x",
                                           occurred_at="2024-01-01T00:00:00Z")).keys())
EVENT_COLUMNS = ["event_id", "call_id", "account_id", "type", "version", "occurred_at", "kafka_partition",
                 "kafka_offset", "causation_id", "correlation_id", "data"]
GATHER_COLUMNS = ["event_id", "call_id", "account_id", "status", "digits", "finished_on_key", "speech", "step",
                  "occurred_at"]
RECORDING_COLUMNS = ["id", "call_id", "account_id", "wav_ref", "mp3_ref", "duration_ms", "size_bytes", "sha256",
                     "channels", "created_at"]
TRANSCRIPTION_COLUMNS = ["recording_id", "call_id", "account_id", "text", "confidence", "segments", "language",
                         "created_at"]


def check_schema_name(schema: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", schema):
        raise ValueError(f"bad schema name {schema!r}")
    return schema


async def ensure_schema(conn: asyncpg.Connection, schema: str = "projection") -> None:
    """Create the projection tables in `schema` if missing (idempotent)."""
    await conn.execute(DDL.replace("{schema}", check_schema_name(schema)))


@dataclass(slots=True)
class Record:
    """One consumed Kafka record, decoded."""

    partition: int
    offset: int
    env: Envelope


@dataclass(slots=True)
class BatchResult:
    applied: int = 0
    duplicates: int = 0
    skipped_stale: int = 0
    calls_touched: int = 0
    new_events: list[Envelope] = field(default_factory=list)


class ProjectionStore:
    """Applies batches of events to the projection tables of one schema."""

    def __init__(self, conn: asyncpg.Connection, schema: str = "projection", consumer: str = "projector",
                 topic: str = "voice.call.events"):
        self.conn = conn
        self.s = check_schema_name(schema)
        self.consumer = consumer
        self.topic = topic
        self._staged = False

    async def _stage(self) -> None:
        # Staging tables live per connection and empty themselves at commit.
        if self._staged:
            return
        for name, table in (("stage_events", "call_events"), ("stage_calls", "calls")):
            await self.conn.execute(f"DROP TABLE IF EXISTS pg_temp.{name}")
            await self.conn.execute(
                f"CREATE TEMP TABLE {name} (LIKE {self.s}.{table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        self._staged = True

    async def offsets(self) -> dict[int, int]:
        """partition -> next offset to consume, as last committed with the data."""
        rows = await self.conn.fetch(
            f"SELECT kafka_partition, next_offset FROM {self.s}.offsets WHERE consumer = $1 AND topic = $2",
            self.consumer, self.topic)
        return {r["kafka_partition"]: r["next_offset"] for r in rows}

    async def apply_batch(self, records: list[Record], consumed_upto: dict[int, int]) -> BatchResult:
        """Apply records and store `consumed_upto` (partition -> next offset) atomically.

        Records below the stored offset were already applied (a redelivery after a
        crash) and are skipped; an event id seen before (a producer retry) is skipped
        too. Either way nothing is applied twice.
        """
        await self._stage()
        res = BatchResult()
        async with self.conn.transaction():
            stored = {r["kafka_partition"]: r["next_offset"] for r in await self.conn.fetch(
                f"SELECT kafka_partition, next_offset FROM {self.s}.offsets"
                f" WHERE consumer = $1 AND topic = $2 FOR UPDATE", self.consumer, self.topic)}
            fresh = [r for r in records if r.offset >= stored.get(r.partition, 0)]
            res.skipped_stale = len(records) - len(fresh)
            if fresh:
                # Within one batch the same event id may appear twice; keep the first.
                seen: set[str] = set()
                uniq = [r for r in fresh if not (r.env.id in seen or seen.add(r.env.id))]
                rows = [(r.env.id, r.env.call_id, r.env.account_id, r.env.type, r.env.version,
                         calls.ts(r.env.occurred_at), r.partition, r.offset, r.env.causation_id,
                         r.env.correlation_id, r.env.data) for r in uniq]
                try:
                    # Fast path: straight COPY. A duplicate id (a producer retry of an event
                    # we already have) aborts it, and we take the careful path instead.
                    async with self.conn.transaction():
                        await self.conn.copy_records_to_table("call_events", schema_name=self.s, records=rows,
                                                              columns=EVENT_COLUMNS)
                    new = [r.env for r in uniq]
                except asyncpg.UniqueViolationError:
                    await self.conn.copy_records_to_table("stage_events", records=rows, columns=EVENT_COLUMNS)
                    inserted = {str(x["event_id"]) for x in await self.conn.fetch(
                        f"INSERT INTO {self.s}.call_events SELECT * FROM stage_events"
                        f" ON CONFLICT (event_id) DO NOTHING RETURNING event_id")}
                    new = [r.env for r in uniq if r.env.id in inserted]
                res.duplicates = len(fresh) - len(new)
                res.applied = len(new)
                res.new_events = new
                await self._apply_calls(new, res)
                await self._insert_rows(new)
            if consumed_upto:
                await self.conn.executemany(
                    f"INSERT INTO {self.s}.offsets (consumer, topic, kafka_partition, next_offset)"
                    f" VALUES ($1, $2, $3, $4) ON CONFLICT (consumer, topic, kafka_partition)"
                    f" DO UPDATE SET next_offset = GREATEST({self.s}.offsets.next_offset, EXCLUDED.next_offset)",
                    [(self.consumer, self.topic, p, o) for p, o in consumed_upto.items()])
        return res

    async def _apply_calls(self, new: list[Envelope], res: BatchResult) -> None:
        ids = list(dict.fromkeys(e.call_id for e in new))
        if not ids:
            return
        current = {r["id"]: dict(r) for r in await self.conn.fetch(
            f"SELECT * FROM {self.s}.calls WHERE id = ANY($1::text[])", ids)}
        for env in new:
            current[env.call_id] = calls.apply(current.get(env.call_id), env)
        rows = [tuple(current[i][c] for c in CALL_COLUMNS) for i in ids]
        await self.conn.copy_records_to_table("stage_calls", records=rows, columns=CALL_COLUMNS)
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in CALL_COLUMNS if c != "id")
        await self.conn.execute(
            f"INSERT INTO {self.s}.calls ({', '.join(CALL_COLUMNS)}) SELECT {', '.join(CALL_COLUMNS)}"
            f" FROM stage_calls ON CONFLICT (id) DO UPDATE SET {sets}")
        res.calls_touched = len(ids)

    async def _insert_rows(self, new: list[Envelope]) -> None:
        # Gathers are keyed by event id and these events are new: COPY cannot conflict.
        gathers = [r for r in map(calls.gather_row, new) if r is not None]
        if gathers:
            await self.conn.copy_records_to_table("gathers", schema_name=self.s, columns=GATHER_COLUMNS,
                                                  records=[tuple(r[c] for c in GATHER_COLUMNS) for r in gathers])
        for fn, table, cols, key in (
            (calls.recording_row, "recordings", RECORDING_COLUMNS, "id"),
            (calls.transcription_row, "transcriptions", TRANSCRIPTION_COLUMNS, "recording_id"),
        ):
            rows = [r for r in map(fn, new) if r is not None]
            if rows:
                ph = ", ".join(f"${i + 1}" for i in range(len(cols)))
                await self.conn.executemany(
                    f"INSERT INTO {self.s}.{table} ({', '.join(cols)}) VALUES ({ph})"
                    f" ON CONFLICT ({key}) DO NOTHING", [tuple(r[c] for c in cols) for r in rows])


def table_names() -> Iterable[str]:
    return ("calls", "call_events", "gathers", "recordings", "transcriptions")
