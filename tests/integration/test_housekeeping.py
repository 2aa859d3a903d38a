"""Housekeeping: expired idempotency keys and orphaned call requests go; nothing else does."""

from __future__ import annotations

import uuid

import orjson
import pytest

from services.common.housekeeping import sweep

pytestmark = pytest.mark.integration


async def test_sweep_removes_only_expired_keys_and_orphans(pg):
    acct = "acct_hk_" + uuid.uuid4().hex[:8]
    await pg.execute("INSERT INTO accounts (id, name, signing_secret) VALUES ($1, $1, 's')", acct)
    try:
        def req(cid, age_s, state="pending"):
            return pg.execute(
                "INSERT INTO call_requests (id, account_id, to_number, from_number, request, created_at, state)"
                " VALUES ($1, $2, '+15551234567', '+15559876543', $3::jsonb, now() - make_interval(secs => $4), $5)",
                cid, acct, orjson.dumps({}).decode(), age_s, state)
        orphan, placed, fresh, keyed, abandoned, old_abandoned = (f"call_hk{i}_{uuid.uuid4().hex[:8]}" for i in range(6))
        # The API answered 503: kept while its PlaceCall may still be in the log, so the
        # orchestrator can refuse it; gone after the idempotency TTL.
        await req(abandoned, 3600, "abandoned")
        await req(old_abandoned, 2 * 86400, "abandoned")
        await req(orphan, 3600)   # never reached Kafka: no orchestrator state
        await req(placed, 3600)   # reached Kafka: the orchestrator has it
        await req(fresh, 5)       # too young to judge
        await req(keyed, 3600)    # its idempotency key is still live: a retry must find it
        await pg.execute("INSERT INTO orch_calls (call_id, account_id, state) VALUES ($1, $2, '{}'::jsonb)",
                         placed, acct)
        await pg.execute("INSERT INTO idempotency_keys (account_id, key, body_sha256, call_id, created_at)"
                         " VALUES ($1, 'old', 'x', 'call_gone', now() - interval '2 days'),"
                         " ($1, 'live', 'y', $2, now())", acct, keyed)
        swept = await sweep(pg, request_grace_s=600, idempotency_ttl_s=86400)
        assert swept["idempotency_keys"] >= 1 and swept["orphaned_requests"] >= 1
        left = {r["id"] for r in await pg.fetch("SELECT id FROM call_requests WHERE account_id = $1", acct)}
        assert left == {placed, fresh, keyed, abandoned}
        keys = {r["key"] for r in await pg.fetch("SELECT key FROM idempotency_keys WHERE account_id = $1", acct)}
        assert keys == {"live"}
    finally:
        await pg.execute("DELETE FROM orch_calls WHERE account_id = $1", acct)
        await pg.execute("DELETE FROM accounts WHERE id = $1", acct)
