"""Postgres side of webhook delivery: the outbox (enqueue, claim, record).

The API reads the delivery log through services/lib/webhook_deliveries.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import asyncpg

from events import Envelope, trace
from services.webhooks.payloads import Routes, body_bytes, payload


@dataclass(frozen=True, slots=True)
class Delivery:
    """One claimed delivery, leased to this worker for one attempt."""

    event_id: str
    call_id: str
    account_id: str
    event_type: str
    url: str
    body: bytes
    attempts: int
    max_attempts: int
    traceparent: str | None = None  # the event's trace context (None: enqueued before it was kept)
    tracestate: str | None = None  # the tracestate that came with it (valid; None: there was none)


class RouteCache:
    """call_id -> Routes, bounded; the database is the truth."""

    def __init__(self, limit: int = 100_000):
        self.limit = limit
        self._d: dict[str, Routes] = {}

    def get(self, call_id: str) -> Routes | None:
        return self._d.get(call_id)

    def put(self, call_id: str, routes: Routes) -> None:
        if len(self._d) >= self.limit:
            self._d.clear()  # crude but bounded; misses fall back to one indexed read
        self._d[call_id] = routes


async def enqueue(conn: asyncpg.Connection, source_topic: str, events: Iterable[Envelope], *,
                  max_attempts: int, cache: RouteCache | None = None) -> int:
    """Turn a batch of events into deliveries in one transaction; returns rows inserted.

    Idempotent: the event id is the primary key, so a redelivered record inserts nothing.
    Events of calls without a URL (or whose call.queued we never saw) are skipped.
    """
    cache = cache or RouteCache()
    rows: list[tuple[Any, ...]] = []
    async with conn.transaction():
        for env in events:
            if env.type == "call.queued":
                routes = Routes.from_queued(env.data)
                await conn.execute(
                    "INSERT INTO webhook_calls (call_id, account_id, webhook_url, gather_webhook_url, transcript_url,"
                    " amd_webhook_url, status_events) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    " ON CONFLICT (call_id) DO NOTHING",
                    env.call_id, env.account_id, routes.webhook_url, routes.gather_webhook_url, routes.transcript_url,
                    routes.amd_webhook_url, sorted(routes.status_events) if routes.status_events is not None else None)
                cache.put(env.call_id, routes)
            body = payload(env)
            if body is None:
                continue
            routes = cache.get(env.call_id)
            if routes is None:
                r = await conn.fetchrow("SELECT webhook_url, gather_webhook_url, transcript_url, amd_webhook_url,"
                                        " status_events FROM webhook_calls WHERE call_id = $1", env.call_id)
                routes = Routes(r["webhook_url"], r["gather_webhook_url"], r["transcript_url"], r["amd_webhook_url"],
                                frozenset(r["status_events"]) if r["status_events"] is not None else None) \
                    if r else Routes()
                cache.put(env.call_id, routes)
            url = routes.url_for(env.type)
            if not url:
                continue
            ctx = trace.of(env)
            rows.append((env.id, source_topic, env.call_id, env.account_id, env.type, url, body_bytes(body),
                         max_attempts, ctx.header, ctx.state))
        if not rows:
            return 0
        # One statement per batch; WITH ORDINALITY keeps Kafka order = seq order.
        res = await _insert_ordered(conn, rows)
    return len(res)


async def _insert_ordered(conn: asyncpg.Connection, rows: list[tuple[Any, ...]]) -> list[Any]:
    cols = [list(c) for c in zip(*rows)]
    return await conn.fetch(
        "INSERT INTO webhook_deliveries (event_id, source_topic, call_id, account_id, event_type, url, body,"
        " max_attempts, traceparent, tracestate)"
        " SELECT a, b, c, d, e, f, g, h, i, j FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
        " $5::text[], $6::text[], $7::bytea[], $8::int[], $9::text[], $10::text[])"
        " WITH ORDINALITY AS u(a, b, c, d, e, f, g, h, i, j, n)"
        " ORDER BY n"
        " ON CONFLICT (event_id) DO NOTHING RETURNING event_id", *cols)


CLAIM_SQL = """
WITH heads AS (
    -- Each call's oldest pending delivery, by one ordered walk of the (call_id, seq)
    -- pending index: linear in the backlog whatever the planner's statistics say (a
    -- NOT EXISTS per candidate went quadratic on a backlog with stale statistics).
    SELECT DISTINCT ON (call_id) event_id, seq, next_attempt_at, leased_until
    FROM webhook_deliveries
    WHERE status = 'pending' AND source_topic = $1
    ORDER BY call_id, seq
)
SELECT d.event_id, d.call_id, d.account_id, d.event_type, d.url, d.body, d.attempts, d.max_attempts,
       d.traceparent, d.tracestate
FROM webhook_deliveries d
WHERE d.event_id IN (SELECT h.event_id FROM heads h
                     WHERE h.next_attempt_at <= now() AND (h.leased_until IS NULL OR h.leased_until < now())
                     ORDER BY h.next_attempt_at, h.seq
                     LIMIT $2)
  AND d.status = 'pending'
ORDER BY d.next_attempt_at, d.seq
FOR UPDATE OF d SKIP LOCKED
"""


async def claim(conn: asyncpg.Connection, source_topic: str, limit: int, lease_s: float,
                choose: Callable[[list[Delivery]], list[Delivery]] = lambda ds: ds) -> list[Delivery]:
    """Lease due deliveries: only the oldest pending one of each call (per-call order).

    `choose` picks among the candidates (fairness between accounts/endpoints); only
    those chosen are leased, the others stay due for the next round.
    """
    async with conn.transaction():
        rows = await conn.fetch(CLAIM_SQL, source_topic, limit)
        cands = [Delivery(r["event_id"], r["call_id"], r["account_id"], r["event_type"], r["url"], bytes(r["body"]),
                          r["attempts"], r["max_attempts"], r["traceparent"],
                          r["tracestate"]) for r in rows]
        chosen = choose(cands)
        if chosen:
            await conn.execute(
                "UPDATE webhook_deliveries SET leased_until = now() + make_interval(secs => $2)"
                " WHERE event_id = ANY($1::text[])", [d.event_id for d in chosen], lease_s)
    return chosen


async def next_due_in(conn: asyncpg.Connection, source_topic: str) -> float | None:
    """Seconds until the earliest pending delivery is due (None when nothing is pending)."""
    v = await conn.fetchval(
        "SELECT extract(epoch FROM min(greatest(next_attempt_at, coalesce(leased_until, next_attempt_at))) - now())"
        " FROM webhook_deliveries WHERE status = 'pending' AND source_topic = $1", source_topic)
    return None if v is None else max(0.0, float(v))


async def record_attempt(conn: asyncpg.Connection, d: Delivery, *, started_at: datetime, status_code: int | None,
                         latency_ms: int, error: str | None, outcome: str, retry_in: float | None = None) -> None:
    """Store one attempt and move the delivery on: outcome is delivered | retry | failed."""
    attempt = d.attempts + 1
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO webhook_attempts (event_id, attempt, started_at, status_code, latency_ms, error)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id, attempt) DO NOTHING",
            d.event_id, attempt, started_at, status_code, latency_ms, error)
        if outcome == "retry":
            await conn.execute(
                "UPDATE webhook_deliveries SET attempts = $2, last_status_code = $3, last_error = $4,"
                " next_attempt_at = now() + make_interval(secs => $5), leased_until = NULL"
                " WHERE event_id = $1 AND status = 'pending'",
                d.event_id, attempt, status_code, error, float(retry_in or 0))
        else:
            await conn.execute(
                "UPDATE webhook_deliveries SET attempts = $2, last_status_code = $3, last_error = $4,"
                " status = $5, finished_at = now(), leased_until = NULL WHERE event_id = $1 AND status = 'pending'",
                d.event_id, attempt, status_code, error, outcome)


async def signing_secret(conn: asyncpg.Connection, account_id: str) -> str | None:
    return await conn.fetchval("SELECT signing_secret FROM accounts WHERE id = $1", account_id)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)

