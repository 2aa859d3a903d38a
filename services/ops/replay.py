"""Ops replay: rebuild every projection from offset 0, verify, and swap atomically.

    canary-voice replay              rebuild into a fresh schema, verify against live, swap
    canary-voice replay --dry-run    rebuild and compare only (the fresh schema is dropped)
    canary-voice replay --until T    rebuild the state as it was at T into projection_asof_*
    canary-voice calls history ID    a call's timeline, read from the log itself

The rebuild uses the projector's own store, the same consumer name and the same
consume-with-tracking block (``services.common.consumer``): every record the live projector
dead-letters (it cannot be read, or Postgres refuses it) is skipped here too and reported,
so the rebuilt tables (offsets included) are byte-identical to what the live projector
wrote from the same log, and the live projector carries on from them after the swap.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import typer
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from events import DecodeError, decode, topics
from services.common import db
from services.common.config import projection_schema
from services.common.consumer import CollectedDeadLetters, Processor
from services.common.kafka import make_consumer, topic_partitions
from services.common.db import init_connection
from services.projector.store import ProjectionStore, ensure_schema, table_names

LIVE = projection_schema()
PK = {"calls": "id", "call_events": "event_id", "gathers": "event_id", "recordings": "id",
      "transcriptions": "recording_id", "offsets": "consumer, topic, kafka_partition"}


async def _end_offsets(consumer, topic: str) -> dict[int, int]:
    parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    ends = await consumer.end_offsets(tps)
    return {tp.partition: off for tp, off in ends.items()}


async def checksums(conn, schema: str) -> dict[str, tuple[int, str]]:
    """(row count, md5 over every row in key order) per projection table."""
    out = {}
    for table in (*table_names(), "offsets"):
        row = await conn.fetchrow(
            f"SELECT count(*) AS n, coalesce(md5(string_agg(md5(t::text), '' ORDER BY {PK[table]})), '') AS h"
            f" FROM {schema}.{table} t")
        out[table] = (row["n"], row["h"])
    return out


class Rebuild:
    """Replays voice.call.events into `schema` through the projector's store and checks."""

    def __init__(self, conn, schema: str, until: datetime | None = None, group: str = "projector"):
        self.conn, self.schema, self.until = conn, schema, until
        self.store = ProjectionStore(conn, schema, consumer=topics.scoped(group), topic=topics.events(), until=until)
        self.skipped = CollectedDeadLetters()  # what the live projector dead-letters
        self.processor = Processor("replay", [self.store.source()], self.store.handle, self.store.tracking(),
                                   self.skipped)
        self.position: dict[int, int] = {}

    @property
    def applied(self) -> int:
        return self.store.applied

    async def start(self) -> None:
        await ensure_schema(self.conn, self.schema)
        self.consumer = make_consumer(group_id=None, max_poll_records=5000)
        await self.consumer.start()
        parts = await topic_partitions(self.consumer, topics.events())
        self.tps = [TopicPartition(topics.events(), p) for p in sorted(parts)]
        self.consumer.assign(self.tps)
        await self.consumer.seek_to_beginning(*self.tps)
        self.position = {tp.partition: 0 for tp in self.tps}

    async def stop(self) -> None:
        await self.consumer.stop()

    async def run_to(self, target: dict[int, int], progress=None) -> None:
        """Apply everything below `target` offsets (partition -> offset)."""
        while any(self.position.get(p, 0) < off for p, off in target.items()):
            batches = await self.consumer.getmany(timeout_ms=500, max_records=5000)
            msgs = []
            for tp, ms in batches.items():
                stop = target.get(tp.partition, 0)
                last = -1
                for m in ms:
                    if m.offset >= stop:
                        break
                    msgs.append(m)
                    last = m.offset
                if ms and ms[-1].offset >= stop:
                    self.consumer.seek(tp, stop)  # records past the target are read by a later run_to
                if last + 1 >= stop or (ms and ms[-1].offset >= stop):
                    self.consumer.pause(tp)
            if msgs:
                upto = await self.processor.process(self.processor.prepare(msgs))
                n = sum(o - self.position.get(p, 0) for (_, p), o in upto.items())
                self.position.update({p: o for (_, p), o in upto.items()})
                if progress:
                    progress(n)
        self.consumer.resume(*self.tps)


async def replay(dry_run: bool = False, until: datetime | None = None, quiet: bool = False) -> dict:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    conn = await db.connect()
    await init_connection(conn)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    schema = f"projection_asof_{stamp}" if until else f"projection_rebuild_{stamp}"
    rb = Rebuild(conn, schema, until)
    await rb.start()
    result: dict = {"schema": schema}
    try:
        target = await _end_offsets(rb.consumer, topics.events())
        total = sum(target.values())
        t0 = time.perf_counter()
        with Progress(TextColumn("replay"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} events"),
                      TextColumn("{task.fields[rate]:,.0f} ev/s"), TimeElapsedColumn(), disable=quiet) as bar:
            task = bar.add_task("replay", total=total, rate=0.0)

            def progress(n):
                done = bar.tasks[0].completed + n
                bar.update(task, completed=done, rate=done / max(time.perf_counter() - t0, 1e-6))

            await rb.run_to(target, progress)
            result.update(events=total, seconds=round(time.perf_counter() - t0, 2),
                          rate=round(total / max(time.perf_counter() - t0, 1e-6)))
            result["skipped"] = [r.to_dict() for r in rb.skipped.sorted()]
            if until:
                result["status"] = "built"
                return result
            # Compare at one log position: catch up with the live projector's offsets and
            # check both in one snapshot; retry if live moved meanwhile.
            for _ in range(10):
                live_store = ProjectionStore(conn, LIVE, consumer=rb.store.consumer, topic=topics.events())
                live_pos = await live_store.offsets() if await _has_schema(conn, LIVE) else {}
                if any(live_pos.get(p, 0) < off for p, off in rb.position.items()):
                    await asyncio.sleep(0.5)  # live is behind the replay: let it catch up
                    continue
                await rb.run_to(live_pos, progress)
                result["skipped"] = [r.to_dict() for r in rb.skipped.sorted()]
                async with conn.transaction(isolation="repeatable_read"):
                    again = await live_store.offsets()
                    if again != live_pos:
                        continue
                    mine, live = await checksums(conn, schema), await checksums(conn, LIVE)
                break
            else:
                result["status"] = "live projection kept moving; not verified"
                return result
        result["tables"] = {t: {"rows": mine[t][0], "match": mine[t] == live[t]} for t in mine}
        result["verified"] = all(mine[t] == live[t] for t in mine)
        if dry_run or not result["verified"]:
            result["status"] = "dry run" if dry_run else "mismatch: live projection kept"
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
            return result
        async with conn.transaction():
            old = f"projection_old_{stamp}"
            await conn.execute(f"ALTER SCHEMA {LIVE} RENAME TO {old}")
            await conn.execute(f"ALTER SCHEMA {schema} RENAME TO {LIVE}")
            await conn.execute(f"DROP SCHEMA {old} CASCADE")
        result["status"] = "swapped"
        return result
    finally:
        await rb.stop()
        await conn.close()


async def _has_schema(conn, name: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", name))


async def history(call_id: str) -> list:
    """Every event of one call, read from its partition of the log (not the projection)."""
    consumer = make_consumer(group_id=None)
    await consumer.start()
    try:
        parts = sorted(await topic_partitions(consumer, topics.events()))
        p = DefaultPartitioner()(call_id.encode(), parts, parts)
        tp = TopicPartition(topics.events(), p)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out, pos = [], 0
        while pos < end:
            for m in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                pos = m.offset + 1
                env = decode(m.value)
                if not isinstance(env, DecodeError) and env.call_id == call_id:
                    out.append((m.offset, env))
        return out
    finally:
        await consumer.stop()


def register(app: typer.Typer) -> None:
    calls_app = typer.Typer(help="Calls, read from the event log.", no_args_is_help=True)
    app.add_typer(calls_app, name="calls")

    @app.command("replay")
    def replay_cmd(dry_run: bool = typer.Option(False, "--dry-run", help="rebuild and compare only"),
                   until: str = typer.Option(None, "--until", help="RFC 3339 time: rebuild the state as of then")):
        """Rebuild all projections from offset 0, verify (rows + checksum per table), swap atomically."""
        when = datetime.fromisoformat(until) if until else None
        if when is not None and when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        res = asyncio.run(replay(dry_run=dry_run, until=when))
        skipped = res.get("skipped") or []
        if skipped:
            typer.echo(f"skipped {len(skipped)} records the projector cannot apply (the live projector"
                       f" dead-letters them to voice.dlq):")
            for r in skipped:
                typer.echo(f"  {r['topic']}:{r['partition']}:{r['offset']} {r['code']}: {r['reason']}")
        for table, info in (res.get("tables") or {}).items():
            typer.echo(f"  {table:15} rows={info['rows']:<9} {'match' if info['match'] else 'MISMATCH'}")
        typer.echo(f"replay: {res.get('events', 0):,} events in {res.get('seconds', 0)} s "
                   f"({res.get('rate', 0):,} ev/s), {len(skipped)} skipped -> {res['status']} ({res['schema']})")
        if res["status"].startswith("mismatch"):
            raise typer.Exit(1)

    @calls_app.command("history")
    def history_cmd(call_id: str):
        """Print a call's timeline from the log."""
        from rich.console import Console
        from rich.table import Table

        rows = asyncio.run(history(call_id))
        if not rows:
            typer.echo(f"no events for {call_id}")
            raise typer.Exit(1)
        t = Table("offset", "occurred_at", "type", "data")
        for off, env in rows:
            import orjson
            t.add_row(str(off), env.occurred_at, env.type, orjson.dumps(env.data).decode()[:100])
        Console().print(t)
