"""Contract of POST/GET /v1/voice/calls against the public docs, on the real stack."""

from __future__ import annotations

import asyncio
import re

import orjson
import pytest

from events import decode_typed
from services.lib.intake import check_place_call
from tests.integration.api.conftest import DOCS_BODY, make_account
from tests.integration.api.helpers import read_topic

pytestmark = pytest.mark.integration

CALL_KEYS = {"id", "to", "from", "status", "direction", "created_at", "updated_at", "answered_at", "ended_at",
             "duration", "answered_by", "price", "end_reason", "hangup_by", "sip_code", "recording", "transcription", "gather",
             "parent_call_id"}  # ours: the dial step's link (null for every other call)
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")


async def test_docs_example_is_accepted_and_lands_on_kafka(client, acct, prefix, pg):
    r = await client.post("/v1/voice/calls", headers=acct.headers, json=DOCS_BODY)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "to", "from", "status", "direction", "created_at"}
    assert re.fullmatch(r"call_[0-9A-Za-z]{20}", body["id"])
    assert body["to"] == "+15551234567" and body["from"] == "+15559876543"
    assert body["status"] == "queued" and body["direction"] == "outbound"
    assert TS.match(body["created_at"])
    assert r.headers["content-type"] == "application/json"

    recs = await read_topic(prefix + "voice.call.commands", 1)
    assert len(recs) == 1
    assert recs[0].key == body["id"].encode()
    decoded = decode_typed(recs[0].value)
    assert decoded, decoded
    env, payload = decoded
    assert env.type == "PlaceCall" and env.call_id == body["id"] and env.account_id == acct.id
    assert env.data["from"] == "+15559876543" and env.data["carrier"] == "sandbox"
    assert env.data["created_at"] == body["created_at"]
    assert env.data["tts"]["voice"] == "en-US-Neural2-F"
    # what the orchestrator will do with it: the same validation passes
    ok, errors = await check_place_call(env.data, acct.id, lambda a, n: n == "+15559876543")
    assert ok is not None and errors == []

    row = await pg.fetchrow("SELECT * FROM call_requests WHERE id = $1", body["id"])
    assert row["account_id"] == acct.id and row["request"]["carrier"] == "sandbox"


async def test_live_key_routes_to_sip(client, acct, prefix):
    r = await client.post("/v1/voice/calls", headers={"Authorization": f"Bearer {acct.live_key}"},
                          json={**DOCS_BODY, "record": True, "transcribe": True, "recording_channels": "dual"})
    assert r.status_code == 201
    [rec] = await read_topic(prefix + "voice.call.commands", 1)
    data = orjson.loads(rec.value)["data"]
    assert data["carrier"] == "sip" and data["record"] is True and data["recording_channels"] == "dual"


async def test_every_documented_field_is_carried(client, acct, prefix):
    body = {"to": "+15551234567", "from": "+15559876543",
            "tts": {"text": "Please enter your 4-digit PIN followed by the pound key.", "voice": "en-GB-Neural2-A",
                    "speed": 1.25, "pitch": -2},
            "record": True, "transcribe": True, "recording_channels": "dual",
            "gather": {"type": "dtmf", "num_digits": 4, "finish_on_key": "#", "timeout": 10,
                       "webhook_url": "https://yourapp.com/webhooks/dtmf"},
            "webhook_url": "https://yourapp.com/webhooks/status", "timeout": 45}
    r = await client.post("/v1/voice/calls", headers=acct.headers, json=body)
    assert r.status_code == 201, r.text
    [rec] = await read_topic(prefix + "voice.call.commands", 1)
    data = orjson.loads(rec.value)["data"]
    for k in ("to", "from", "record", "transcribe", "recording_channels", "webhook_url", "timeout"):
        assert data[k] == body[k], k
    assert data["tts"] == {"text": body["tts"]["text"], "voice": "en-GB-Neural2-A", "speed": 1.25, "pitch": -2.0}
    for k, v in body["gather"].items():
        assert data["gather"][k] == v, k
    audio = {**{k: v for k, v in body.items() if k != "tts"}, "audio_url": "https://example.com/prompt.mp3"}
    r = await client.post("/v1/voice/calls", headers=acct.headers, json=audio)
    assert r.status_code == 201, r.text


async def test_get_right_after_post_without_projector(client, acct):
    r = await client.post("/v1/voice/calls", headers=acct.headers, json=DOCS_BODY)
    call_id = r.json()["id"]
    g = await client.get(f"/v1/voice/calls/{call_id}", headers=acct.headers)
    assert g.status_code == 200
    call = g.json()
    assert set(call) == CALL_KEYS
    assert call["status"] == "queued" and call["price"] is None and call["recording"] is None
    assert call["created_at"] == r.json()["created_at"]


async def test_get_reads_the_projection(client, acct, pg):
    r = await client.post("/v1/voice/calls", headers=acct.headers, json=DOCS_BODY)
    call_id = r.json()["id"]
    # what the projector writes once the call ran (inserted directly: the projector is tested elsewhere)
    await pg.execute(
        "INSERT INTO projection.calls (id, account_id, to_number, from_number, status, direction, created_at,"
        " updated_at, answered_at, ended_at, duration, answered_by, end_reason, hangup_by, sip_code, recording_id, gather)"
        " VALUES ($1, $2, '+15551234567', '+15559876543', 'completed', 'outbound', $3::timestamptz,"
        " $3::timestamptz + interval '20 s', $3::timestamptz + interval '3 s', $3::timestamptz + interval '20 s',"
        " 17, 'human', 'callee hung up', 'callee', 200, 'rec_t1', $4)",
        call_id, acct.id, __import__("datetime").datetime.fromisoformat(r.json()["created_at"]),
        {"status": "completed", "digits": "1234", "finished_on_key": "#", "speech": None})
    await pg.execute(
        "INSERT INTO projection.recordings (id, call_id, account_id, wav_ref, mp3_ref, duration_ms, size_bytes,"
        " sha256, channels, created_at) VALUES ($1, $2, $3, 'sha256:' || repeat('a', 64) || '.wav', NULL, 16600,"
        " 1000, '', 'mono', now())", f"rec_{call_id[5:]}", call_id, acct.id)
    await pg.execute(
        "INSERT INTO projection.transcriptions (recording_id, call_id, account_id, text, confidence, segments,"
        " created_at) VALUES ($1, $2, $3, 'hello there', 0.93, '[]', now())", f"rec_{call_id[5:]}", call_id, acct.id)
    call = (await client.get(f"/v1/voice/calls/{call_id}", headers=acct.headers)).json()
    assert call["status"] == "completed" and call["duration"] == 17 and call["answered_by"] == "human"
    assert call["sip_code"] == 200 and call["end_reason"] == "callee hung up" and call["hangup_by"] == "callee"
    assert TS.match(call["answered_at"]) and TS.match(call["ended_at"])
    assert call["gather"] == {"status": "completed", "digits": "1234", "finished_on_key": "#", "speech": None}
    assert call["recording"]["id"] == f"rec_{call_id[5:]}" and call["recording"]["duration"] == 17
    assert "/media?" in call["recording"]["url"]
    assert call["transcription"] == {"text": "hello there", "confidence": 0.93}
    # a final call cannot be hung up
    h = await client.post(f"/v1/voice/calls/{call_id}/hangup", headers=acct.headers)
    assert h.status_code == 409 and h.json()["error"]["code"] == "call_already_ended"
    # filters
    lst = (await client.get("/v1/voice/calls", params={"status": "completed"}, headers=acct.headers)).json()
    assert [c["id"] for c in lst["data"]] == [call_id]
    lst = (await client.get("/v1/voice/calls", params={"status": "queued"}, headers=acct.headers)).json()
    assert call_id not in [c["id"] for c in lst["data"]]


async def test_list_pagination_and_filters(client):
    a = await make_account()
    ids = []
    for i in range(5):
        body = {**DOCS_BODY, "to": f"+1555123456{i}"}
        ids.append((await client.post("/v1/voice/calls", headers=a.headers, json=body)).json()["id"])
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/voice/calls", params=params, headers=a.headers)).json()
        assert set(page) == {"data", "has_more", "next_cursor"}
        seen += [c["id"] for c in page["data"]]
        pages += 1
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == list(reversed(ids)) and pages == 3
    only = (await client.get("/v1/voice/calls", params={"to": "+15551234562"}, headers=a.headers)).json()
    assert [c["id"] for c in only["data"]] == [ids[2]]
    frm = (await client.get("/v1/voice/calls", params={"from": "+15559876543", "limit": 100},
                            headers=a.headers)).json()
    assert len(frm["data"]) == 5
    future = (await client.get("/v1/voice/calls", params={"created_after": "2999-01-01T00:00:00Z"},
                               headers=a.headers)).json()
    assert future["data"] == []
    past = (await client.get("/v1/voice/calls", params={"created_before": "2000-01-01T00:00:00Z"},
                             headers=a.headers)).json()
    assert past["data"] == []
    bad = await client.get("/v1/voice/calls", params={"cursor": "garbage"}, headers=a.headers)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_cursor"
    bad = await client.get("/v1/voice/calls", params={"status": "nope"}, headers=a.headers)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "status"


async def test_cross_account_is_404(client, acct, other):
    call_id = (await client.post("/v1/voice/calls", headers=acct.headers, json=DOCS_BODY)).json()["id"]
    for method, path in (("GET", f"/v1/voice/calls/{call_id}"), ("POST", f"/v1/voice/calls/{call_id}/hangup"),
                         ("GET", f"/v1/voice/calls/{call_id}/events"),
                         ("GET", f"/v1/voice/calls/{call_id}/recording")):
        r = await client.request(method, path, headers=other.headers)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error"]["code"] == "call_not_found"
    lst = (await client.get("/v1/voice/calls", headers=other.headers)).json()
    assert call_id not in [c["id"] for c in lst["data"]]
    # and other's numbers are not acct's: acct cannot call from a number only other verified
    r = await client.post("/v1/voice/numbers", headers=other.headers, json={"number": "+15550001111"})
    assert r.status_code == 201
    r = await client.post("/v1/voice/calls", headers=acct.headers, json={**DOCS_BODY, "from": "+15550001111"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "number_not_verified"


async def test_hangup_produces_command(client, acct, prefix):
    call_id = (await client.post("/v1/voice/calls", headers=acct.headers, json=DOCS_BODY)).json()["id"]
    r = await client.post(f"/v1/voice/calls/{call_id}/hangup", headers=acct.headers)
    assert r.status_code == 202 and r.json()["id"] == call_id
    recs = await read_topic(prefix + "voice.call.commands", 2)
    types = [orjson.loads(x.value)["type"] for x in recs if x.key == call_id.encode()]
    assert types == ["PlaceCall", "HangupCall"]


async def test_events_timeline(client, acct, pg):
    call_id = (await client.post("/v1/voice/calls", headers=acct.headers, json=DOCS_BODY)).json()["id"]
    r = await client.get(f"/v1/voice/calls/{call_id}/events", headers=acct.headers)
    assert r.status_code == 200 and r.json() == {"call_id": call_id, "data": []}
    import uuid
    from datetime import datetime, timezone

    # The trace id: the row's traceparent's; without one (or with junk), the correlation id's.
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    correlation = uuid.uuid4()
    for off, t, traceparent in ((11, "call.ringing", "junk"), (10, "call.queued", None),
                                (12, "call.answered", tp)):
        await pg.execute(
            "INSERT INTO projection.call_events (event_id, call_id, account_id, type, version, occurred_at,"
            " kafka_partition, kafka_offset, correlation_id, data, traceparent)"
            " VALUES ($1, $2, $3, $4, 1, $5, 0, $6, $7, $8, $9)",
            uuid.uuid4(), call_id, acct.id, t, datetime.now(timezone.utc), off, correlation, {"n": off}, traceparent)
    data = (await client.get(f"/v1/voice/calls/{call_id}/events", headers=acct.headers)).json()["data"]
    assert [e["type"] for e in data] == ["call.queued", "call.ringing", "call.answered"]
    assert set(data[0]) == {"id", "type", "version", "occurred_at", "trace_id", "data"} and data[0]["data"] == {"n": 10}
    assert [e["trace_id"] for e in data] == [correlation.hex, correlation.hex, "4bf92f3577b34da6a3ce929d0e0e4736"]


async def test_idempotency_under_concurrent_retries(client, acct, prefix, pg):
    headers = {**acct.headers, "Idempotency-Key": "order-42"}
    rs = await asyncio.gather(*(client.post("/v1/voice/calls", headers=headers, json=DOCS_BODY)
                                for _ in range(8)))
    assert all(r.status_code == 201 for r in rs), [r.text for r in rs]
    ids = {r.json()["id"] for r in rs}
    assert len(ids) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in rs) == 7
    [call_id] = ids
    assert await pg.fetchval("SELECT count(*) FROM call_requests WHERE account_id = $1", acct.id) == 1
    recs = await read_topic(prefix + "voice.call.commands", 1)
    assert [r.key for r in recs] == [call_id.encode()]
    # key order / whitespace do not matter; a different body does
    same = await client.post("/v1/voice/calls", headers={**headers, "Content-Type": "application/json"},
                             content=orjson.dumps(dict(reversed(list(DOCS_BODY.items())))))
    assert same.status_code == 201 and same.json()["id"] == call_id
    diff = await client.post("/v1/voice/calls", headers=headers, json={**DOCS_BODY, "to": "+15551230000"})
    assert diff.status_code == 409 and diff.json()["error"]["code"] == "idempotency_key_reused"
    # keys are per account
    o = await make_account()
    r = await client.post("/v1/voice/calls", headers={**o.headers, "Idempotency-Key": "order-42"}, json=DOCS_BODY)
    assert r.status_code == 201 and r.json()["id"] != call_id


async def test_rate_limit_429(client):
    # One token per 100 s: the burst of 20 is all this account gets while the test runs,
    # however long its 25 requests take.
    a = await make_account(cps=0.01)
    codes = []
    for _ in range(25):
        r = await client.post("/v1/voice/calls", headers=a.headers, json=DOCS_BODY)
        codes.append(r.status_code)
        if r.status_code == 429:
            assert 1 <= int(r.headers["retry-after"]) <= 100  # when the next token is due
            assert r.json()["error"]["code"] == "rate_limited"
    assert codes == [201] * 20 + [429] * 5


async def test_kafka_down_is_503_and_nothing_accepted(prefix, monkeypatch, pg, acct):
    import socket

    import httpx

    from services.api.app import create_app
    from services.api.runtime import Runtime

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("CANARY_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("CANARY_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")
    monkeypatch.setenv("CANARY_API_SEND_TIMEOUT", "2")
    rt = Runtime()
    await rt.start()
    try:
        app = create_app(rt)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            for headers in (acct.headers, {**acct.headers, "Idempotency-Key": "k1"}):
                rt._next_kafka_try = 0
                r = await c.post("/v1/voice/calls", headers=headers, json=DOCS_BODY)
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"].isdigit()
                assert r.json()["error"]["code"] == "kafka_unavailable"
            # Nothing accepted: each refused request is kept only as 'abandoned' (so a late landing
            # of its PlaceCall is refused by the orchestrator), and no call is listed.
            states = await pg.fetch("SELECT state FROM call_requests WHERE account_id = $1", acct.id)
            assert [r["state"] for r in states] == ["abandoned", "abandoned"], states
            assert await pg.fetchval("SELECT count(*) FROM idempotency_keys WHERE account_id = $1", acct.id) == 0
            # reads still work
            assert (await c.get("/v1/voice/calls", headers=acct.headers)).status_code == 200
    finally:
        await rt.stop()
