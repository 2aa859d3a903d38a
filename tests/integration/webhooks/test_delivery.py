"""Webhook delivery against a real local receiver, real Kafka and Postgres."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator

from services.common.kafka import publish_many
from services.api.routers.webhooks import router as webhooks_router
from tests.conftest import router_client
from tests.integration.api.helpers import read_topic
from tests.integration.webhooks.conftest import call_events, wait_for

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas" / "webhooks"


def schema(name: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads((SCHEMAS / name).read_text()))


async def deliveries(pg, call_id: str):
    return await pg.fetch("SELECT event_id, event_type, status, attempts, last_error, last_status_code"
                          " FROM webhook_deliveries WHERE call_id = $1 ORDER BY seq", call_id)


async def test_status_and_gather_webhooks_are_signed_exact_and_in_order(prefix, producer, account, receiver,
                                                                       run_worker):
    acct, _ = account
    evs = call_events(acct, receiver.url("/status"), receiver.url("/dtmf"),
                      types=("call.queued", "call.ringing", "call.answered", "gather.completed", "call.completed"))
    await run_worker()
    await publish_many(producer, prefix + "voice.call.events", evs)
    await wait_for(lambda: len(receiver.requests) == 5)

    status = receiver.on("/status")
    assert [r.json["status"] for r in status] == ["queued", "ringing", "in-progress", "completed"]
    assert all(r.signature_ok for r in receiver.requests)
    for r, ev in zip(status, [e for e in evs if e.type != "gather.completed"]):
        assert r.headers["Idempotency-Key"] == r.headers["Canary-Event-Id"] == ev.id
        assert r.headers["Content-Type"] == "application/json"
        schema("call.status.json").validate(r.json)
    [g] = receiver.on("/dtmf")
    body = g.json
    assert {k: body[k] for k in ("call_id", "type", "digits", "finished_on_key")} == {
        "call_id": evs[0].call_id, "type": "gather.completed", "digits": "1234", "finished_on_key": "#"}
    schema("gather.completed.json").validate(body)
    # per-call order across both URLs: gather.completed came after in-progress, before completed
    order = sorted(receiver.requests, key=lambda r: r.at)
    assert [r.json["type"] for r in order] == [e.type for e in evs]


async def test_redelivered_event_is_posted_once(prefix, producer, account, receiver, run_worker, pg):
    acct, _ = account
    evs = call_events(acct, receiver.url("/s"), types=("call.queued", "call.ringing", "call.answered"))
    twice, last = evs[:2], evs[2]
    # Both events twice (a producer retry, a replay...), then one more event of the call. A
    # call's webhooks go out in log order, so once the last one is in, a second POST of
    # either duplicate would be in too.
    await publish_many(producer, prefix + "voice.call.events", twice + twice + [last])
    await run_worker()
    await wait_for(lambda: any(r.json["type"] == "call.answered" for r in receiver.requests))
    assert [r.json["type"] for r in receiver.requests] == ["call.queued", "call.ringing", "call.answered"]
    assert len(await deliveries(pg, evs[0].call_id)) == 3


async def test_retries_after_500s_and_timeout_then_success_visible_in_api(prefix, producer, account, receiver,
                                                                         run_worker, pg, pool):
    acct, _ = account
    evs = call_events(acct, receiver.url("/flaky"), types=("call.queued",))
    # then 200. The attempt timeout leaves slack for a loaded machine (a local answer takes
    # milliseconds); the sleep is far past it.
    receiver.script["/flaky"] = [500, ("sleep", 8.0), 503]
    await run_worker(timeout=3.0)
    await publish_many(producer, prefix + "voice.call.events", evs)

    async def delivered():
        rows = await deliveries(pg, evs[0].call_id)
        return rows and rows[0]["status"] == "delivered"
    await wait_for(delivered)
    # The timed-out attempt's request is logged only when its (late) answer is sent: by attempt number.
    by_attempt = {r.headers["Canary-Delivery-Attempt"]: r for r in receiver.requests}
    assert [by_attempt[n].status for n in ("1", "3", "4")] == [500, 503, 200]
    assert all(r.signature_ok for r in receiver.requests)

    async with router_client(webhooks_router, acct, pool) as c:
        resp = await c.get(f"/v1/voice/calls/{evs[0].call_id}/webhooks")
        assert resp.status_code == 200
        [d] = resp.json()["data"]
        assert d["status"] == "delivered" and d["attempts"] == 4 and d["type"] == "call.queued"
        log = d["attempt_log"]
        assert [a["status_code"] for a in log] == [500, None, 503, 200]
        assert "timeout" in log[1]["error"]
        assert all(isinstance(a["latency_ms"], int) for a in log)
        assert (await c.get("/v1/voice/calls/call_nope/webhooks")).status_code == 404
    async with router_client(webhooks_router, "acct_someone_else", pool) as c:
        assert (await c.get(f"/v1/voice/calls/{evs[0].call_id}/webhooks")).status_code == 404


async def test_dead_letter_after_n_failures_then_the_call_moves_on(prefix, producer, account, receiver,
                                                                  run_worker, pg):
    acct, _ = account
    evs = call_events(acct, receiver.url("/down"), types=("call.queued", "call.ringing"))
    receiver.script["/down"] = [500, 500, 500]  # max_attempts=3: all three fail; the next event gets 200
    await run_worker(max_attempts=3)
    await publish_many(producer, prefix + "voice.call.events", evs)

    async def settled():
        rows = await deliveries(pg, evs[0].call_id)
        return len(rows) == 2 and all(r["status"] != "pending" for r in rows) and rows
    rows = await wait_for(settled)
    assert [r["status"] for r in rows] == ["failed", "delivered"]
    assert rows[0]["attempts"] == 3 and rows[0]["last_status_code"] == 500
    assert [r.json["type"] for r in receiver.requests] == ["call.queued"] * 3 + ["call.ringing"]

    # The DLQ record is acked before the row turns `failed`: it is in the topic by now.
    [m] = await read_topic(prefix + "voice.dlq", 1)
    assert m.key.decode() == evs[0].id
    dlq = orjson.loads(m.value)
    assert dlq["code"] == "webhook_failed" and "after 3 attempts" in dlq["reason"] and "HTTP 500" in dlq["reason"]
    assert dlq["type"] == "call.queued" and dlq["errors"][0]["event_id"] == evs[0].id
    assert orjson.loads(dlq["raw_text"])["call_id"] == evs[0].call_id


async def test_order_per_call_while_other_calls_flow(prefix, producer, account, receiver, run_worker):
    acct, _ = account
    slow_call = call_events(acct, receiver.url("/a"), types=("call.queued", "call.ringing", "call.answered"))
    other_call = call_events(acct, receiver.url("/b"), types=("call.queued", "call.ringing", "call.answered"))

    def other_done() -> bool:
        return len([r for r in receiver.on("/b") if r.status == 200]) == 3

    # /a fails until the other call has all its webhooks. Were the other call held up by
    # the retrying one, /a would use up its attempts (~20 s of retries) and its first event
    # would be dead-lettered, never delivered.
    receiver.script["/a"] = [("while", lambda: not other_done(), 500)]
    await run_worker(max_attempts=30, backoff_max=1.0)
    await publish_many(producer, prefix + "voice.call.events", slow_call + other_call)
    await wait_for(lambda: len([r for r in receiver.requests if r.status == 200]) == 6)
    a = [(r.json["type"], r.status) for r in receiver.on("/a")]
    assert a[0] == ("call.queued", 500), a  # it was retrying while the other call flowed
    assert a[-3:] == [("call.queued", 200), ("call.ringing", 200), ("call.answered", 200)], a
    assert set(a[:-3]) == {("call.queued", 500)}, a
    assert [r.json["type"] for r in receiver.on("/b")] == ["call.queued", "call.ringing", "call.answered"]


async def test_ssrf_private_target_refused_without_dev_flag(prefix, producer, account, receiver, run_worker, pg,
                                                           monkeypatch):
    acct, _ = account
    evs = call_events(acct, receiver.url("/internal"), types=("call.queued",))
    await run_worker()
    monkeypatch.delenv("CANARY_ALLOW_PRIVATE_URLS")  # production: loopback is refused
    await publish_many(producer, prefix + "voice.call.events", evs)

    async def failed():
        rows = await deliveries(pg, evs[0].call_id)
        return rows and rows[0]["status"] == "failed" and rows[0]
    row = await wait_for(failed)
    assert row["attempts"] == 1 and "refused" in row["last_error"] and "127.0.0.1" in row["last_error"]
    assert receiver.requests == []


async def test_poison_events_are_never_delivered_to_the_customer(prefix, producer, account, receiver, run_worker, pg):
    """Events that decode but break the envelope or the catalog (the poison messages every
    consumer refuses) are skipped here too, not posted: before, a `call.ringing` with the id
    `evt-not-a-uuid` went out as a status webhook with that id."""
    acct, _ = account
    evs = call_events(acct, receiver.url("/s"), types=("call.queued", "call.ringing", "call.answered"))
    queued, ringing, answered = evs
    bad_id = orjson.dumps({**ringing.to_dict(), "id": "evt-not-a-uuid"})
    bad_time = orjson.dumps({**ringing.to_dict(), "id": str(uuid.uuid4()), "occurred_at": "yesterday"})
    bad_cause = orjson.dumps({**answered.to_dict(), "id": str(uuid.uuid4()), "causation_id": "nope"})
    topic = prefix + "voice.call.events"
    await publish_many(producer, topic, [queued])
    for raw in (bad_id, bad_time, bad_cause):
        await (await producer.send(topic, raw, key=queued.call_id.encode()))
    await publish_many(producer, topic, [ringing, answered])
    await run_worker()
    await wait_for(lambda: any(r.json["type"] == "call.answered" for r in receiver.requests))
    assert [r.headers["Canary-Event-Id"] for r in receiver.requests] == [queued.id, ringing.id, answered.id]
    assert [r["event_id"] for r in await deliveries(pg, queued.call_id)] == [queued.id, ringing.id, answered.id]


async def test_live_transcripts_are_posted_signed_in_order_to_the_transcript_url(prefix, producer, account, receiver,
                                                                                 run_worker):
    from events import Envelope

    acct, _ = account
    evs = call_events(acct, receiver.url("/status"), types=("call.queued", "call.answered"))
    cid = evs[0].call_id
    queued = evs[0]
    evs[0] = Envelope(id=queued.id, type=queued.type, call_id=cid, account_id=acct, occurred_at=queued.occurred_at,
                      data={**queued.data, "transcribe": True, "transcribe_webhook_url": receiver.url("/live")})
    said = [("I would", False), ("I would like to", False), ("I would like to check my balance.", True)]
    evs += [Envelope(type="transcription.partial", call_id=cid, account_id=acct,
                     occurred_at=f"2026-01-01T00:00:1{i}.000Z",
                     data={"text": text, "final": final, "utterance": 0, "channel": "callee", "offset_ms": 900,
                           "duration_ms": 600 * (i + 1)})
            for i, (text, final) in enumerate(said)]
    await run_worker()
    await publish_many(producer, prefix + "voice.call.events", evs)
    await wait_for(lambda: len(receiver.on("/live")) == 3 and len(receiver.on("/status")) == 2)
    live = receiver.on("/live")
    assert [(r.json["text"], r.json["final"]) for r in live] == said  # each replaces the last: same id
    assert {r.json["utterance_id"] for r in live} == {"callee-0"}
    assert all(r.signature_ok for r in live)
    for r in live:
        schema("transcription.partial.json").validate(r.json)
    assert all(r.json["type"] != "transcription.partial" for r in receiver.on("/status"))
