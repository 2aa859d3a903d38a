"""The webhook delivery log of a call, as the API shows it (GET /v1/voice/calls/{id}/webhooks).

The read side of the outbox the webhooks service writes (migration 0003).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.common.accounts import iso


async def deliveries_for_call(conn: asyncpg.Connection, call_id: str, account_id: str) -> list[dict[str, Any]] | None:
    """Every delivery of a call with its attempts (oldest first); None if the call is unknown."""
    known = await conn.fetchval("SELECT 1 FROM webhook_calls WHERE call_id = $1 AND account_id = $2",
                                call_id, account_id)
    rows = await conn.fetch(
        "SELECT event_id, event_type, url, status, attempts, max_attempts, next_attempt_at, last_status_code,"
        " last_error, created_at, finished_at FROM webhook_deliveries"
        " WHERE call_id = $1 AND account_id = $2 ORDER BY seq", call_id, account_id)
    if not known and not rows:
        return None
    attempts = await conn.fetch(
        "SELECT a.event_id, a.attempt, a.started_at, a.status_code, a.latency_ms, a.error"
        " FROM webhook_attempts a JOIN webhook_deliveries d USING (event_id)"
        " WHERE d.call_id = $1 AND d.account_id = $2 ORDER BY d.seq, a.attempt", call_id, account_id)
    by_event: dict[str, list[dict[str, Any]]] = {}
    for a in attempts:
        by_event.setdefault(a["event_id"], []).append({
            "attempt": a["attempt"], "at": iso(a["started_at"]), "status_code": a["status_code"],
            "latency_ms": a["latency_ms"], "error": a["error"]})
    return [{
        "event_id": r["event_id"], "type": r["event_type"], "url": r["url"], "status": r["status"],
        "attempts": r["attempts"], "max_attempts": r["max_attempts"],
        "next_attempt_at": iso(r["next_attempt_at"]) if r["status"] == "pending" else None,
        "last_status_code": r["last_status_code"], "last_error": r["last_error"],
        "created_at": iso(r["created_at"]), "finished_at": iso(r["finished_at"]),
        "attempt_log": by_event.get(r["event_id"], []),
    } for r in rows]
