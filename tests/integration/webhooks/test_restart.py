"""Kill the webhook worker (SIGKILL) while a delivery waits for its retry: nothing is lost."""

from __future__ import annotations

import os
import signal

import pytest

from services.common.kafka import publish_many
from tests.conftest import service_env, spawn
from tests.integration.webhooks.conftest import call_events, wait_for

pytestmark = pytest.mark.integration


async def test_restart_mid_retry_still_delivers_in_order(prefix, producer, account, receiver, pg, tmp_path):
    acct, _ = account
    evs = call_events(acct, receiver.url("/r"), types=("call.queued", "call.ringing", "call.completed"))
    gate = {"open": False}
    receiver.script["/r"] = [("while", lambda: not gate["open"], 500)]  # fails until the worker was restarted
    env = service_env(prefix, CANARY_ALLOW_PRIVATE_URLS="1", CANARY_WEBHOOK_BACKOFF_BASE="1.0",
                      CANARY_WEBHOOK_TIMEOUT="2", CANARY_WEBHOOK_POLL="0.05", CANARY_WEBHOOK_MAX_ATTEMPTS="6")
    log = tmp_path / "webhooks.log"
    proc = spawn("services.webhooks", env, log)
    try:
        await publish_many(producer, prefix + "voice.call.events", evs)

        async def failed_once():
            return await pg.fetchrow("SELECT status, attempts FROM webhook_deliveries"
                                     " WHERE event_id = $1 AND attempts >= 1", evs[0].id)
        await wait_for(failed_once, timeout=60)  # the first attempt failed and is recorded
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        row = await pg.fetchrow("SELECT status, attempts FROM webhook_deliveries WHERE event_id = $1", evs[0].id)
        assert row["status"] == "pending" and row["attempts"] >= 1  # its retry waits in Postgres
        gate["open"] = True
        proc = spawn("services.webhooks", env, log)

        async def all_done():
            rows = await pg.fetch("SELECT status FROM webhook_deliveries WHERE call_id = $1", evs[0].call_id)
            return len(rows) == 3 and all(r["status"] == "delivered" for r in rows)
        await wait_for(all_done, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    ok = [r for r in receiver.requests if r.status == 200]
    assert [r.json["type"] for r in ok] == [e.type for e in evs]  # each delivered once, in order
    assert all(r.signature_ok for r in receiver.requests)
    queued = [r.status for r in receiver.requests if r.json["type"] == "call.queued"]
    assert len(queued) >= 2 and set(queued[:-1]) == {500} and queued[-1] == 200, queued  # retried after restart
