"""A call's status_callback_events pick its status webhooks (real receiver, Kafka, Postgres)."""

from __future__ import annotations

import asyncio

import pytest

from events import Envelope
from services.common.kafka import publish_many
from services.webhooks.store import RouteCache, enqueue
from tests.integration.webhooks.conftest import call_events, wait_for

pytestmark = pytest.mark.integration

TYPES = ("call.queued", "call.ringing", "call.answered", "gather.completed", "call.completed")


def selecting(evs: list[Envelope], names: list[str]) -> list[Envelope]:
    q = evs[0]
    return [Envelope(type=q.type, call_id=q.call_id, account_id=q.account_id, occurred_at=q.occurred_at, id=q.id,
                     data={**q.data, "status_callback_events": names}), *evs[1:]]


async def test_only_the_selected_status_webhooks_are_sent(prefix, producer, account, receiver, run_worker, pg):
    acct, _ = account
    evs = selecting(call_events(acct, receiver.url("/status"), receiver.url("/dtmf"), types=TYPES),
                    ["answered", "completed"])
    await run_worker()
    await publish_many(producer, prefix + "voice.call.events", evs)
    await wait_for(lambda: len(receiver.requests) == 3)
    await asyncio.sleep(0.5)  # nothing more comes
    assert [r.json["status"] for r in receiver.on("/status")] == ["in-progress", "completed"]
    assert [r.json["type"] for r in receiver.on("/dtmf")] == ["gather.completed"]  # never filtered
    stored = await pg.fetchval("SELECT status_events FROM webhook_calls WHERE call_id = $1", evs[0].call_id)
    assert sorted(stored) == ["completed", "in-progress"]


async def test_the_selection_holds_after_the_route_cache_is_gone(pg, account):
    """A worker that did not see call.queued (restarted) reads the selection from Postgres."""
    acct, _ = account
    evs = selecting(call_events(acct, "https://app.example/status", types=TYPES[:3] + TYPES[4:]), ["ringing"])
    assert await enqueue(pg, "t.events", evs[:1], max_attempts=3, cache=RouteCache()) == 0  # queued: not selected
    n = await enqueue(pg, "t.events", evs[1:], max_attempts=3, cache=RouteCache())  # a fresh cache
    assert n == 1
    rows = await pg.fetch("SELECT event_type FROM webhook_deliveries WHERE call_id = $1", evs[0].call_id)
    assert [r["event_type"] for r in rows] == ["call.ringing"]


async def test_without_a_selection_every_status_webhook_is_sent(pg, account):
    acct, _ = account
    evs = call_events(acct, "https://app.example/status", types=TYPES[:3] + TYPES[4:])
    n = await enqueue(pg, "t.events", evs, max_attempts=3, cache=RouteCache())
    assert n == 4
