"""Periodic clean-up of the durable API tables (run by the orchestrator's timer loop).

- Idempotency keys expire after a day (CANARY_IDEMPOTENCY_TTL_S), as clients expect of
  Stripe- or Twilio-style keys; a retry after that places a new call.
- A `call_requests` row whose command never reached Kafka (the API process died between
  the insert and the ack: the client got no 201) would show `queued` forever. After a
  grace period (CANARY_REQUEST_GRACE_S, default 10 min) a row the orchestrator never saw
  is removed; a call that reached Kafka always has orchestrator state within seconds.
  An abandoned request (the API answered 503) stays as long as an idempotency key.
"""

from __future__ import annotations

from services.common.config import settings


async def sweep(conn, *, request_grace_s: float | None = None, idempotency_ttl_s: float | None = None) -> dict:
    """Delete expired idempotency keys and orphaned call requests; returns the counts."""
    s = settings().housekeeping
    grace = request_grace_s if request_grace_s is not None else s.request_grace_s
    ttl = idempotency_ttl_s if idempotency_ttl_s is not None else s.idempotency_ttl_s
    keys = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)", ttl)
    # An abandoned request is kept as long as an idempotency key: its PlaceCall may still be
    # in the log, and the orchestrator must find the row to refuse it.
    requests = await conn.execute(
        "DELETE FROM call_requests r WHERE r.created_at < now() - make_interval("
        "   secs => CASE WHEN r.state = 'abandoned' THEN greatest($1::float8, $2::float8) ELSE $1::float8 END)"
        " AND NOT EXISTS (SELECT 1 FROM orch_calls o WHERE o.call_id = r.id)"
        " AND NOT EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.call_id = r.id)", grace, ttl)
    return {"idempotency_keys": int(keys.split()[-1]), "orphaned_requests": int(requests.split()[-1])}
