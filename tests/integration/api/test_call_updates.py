"""POST /v1/voice/calls/{id}: what it sends on Kafka, and what each bad request gets.

The app runs in-process on real Kafka and Postgres; the call's status is what the projection
says (a row inserted here stands for the projector)."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from tests.integration.api.conftest import DOCS_BODY
from tests.integration.api.helpers import read_topic


async def place(client, acct) -> str:
    r = await client.post("/v1/voice/calls", headers=acct.headers, json=DOCS_BODY)
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def ended(pg, acct, call_id: str, status: str = "completed") -> None:
    at = datetime.now().astimezone()
    await pg.execute("INSERT INTO projection.calls (id, account_id, status, created_at, updated_at, ended_at)"
                     " VALUES ($1, $2, $3, $4, $4, $4)", call_id, acct.id, status, at)


async def commands(prefix: str, call_id: str, want: int) -> list[dict]:
    recs = await read_topic(prefix + "voice.call.commands", want)
    return [orjson.loads(r.value) for r in recs if r.key == call_id.encode()]


async def test_an_update_is_an_update_call_command(client, acct, prefix):
    call_id = await place(client, acct)
    r = await client.post(f"/v1/voice/calls/{call_id}", headers=acct.headers,
                          json={"tts": {"text": "Please hold."}, "interrupt": False, "send_digits": "12#"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["id"] == call_id and body["status"] == "queued"
    assert body["update"]["changes"] == ["tts", "send_digits"]
    cmds = await commands(prefix, call_id, 2)
    assert [c["type"] for c in cmds] == ["PlaceCall", "UpdateCall"]
    assert cmds[1]["id"] == body["update"]["id"]
    assert cmds[1]["data"] == {"tts": {"text": "Please hold.", "voice": "en-US-Neural2-F", "speed": 1.0, "pitch": 0.0},
                               "interrupt": False, "send_digits": "12#"}


async def test_idempotency_key_sends_an_update_once(client, acct, prefix):
    call_id = await place(client, acct)
    h = {**acct.headers, "Idempotency-Key": "upd-1"}
    first = await client.post(f"/v1/voice/calls/{call_id}", headers=h, json={"send_digits": "1"})
    again = await client.post(f"/v1/voice/calls/{call_id}", headers=h, json={"send_digits": "1"})
    assert first.status_code == again.status_code == 202
    assert again.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first.headers
    assert first.json()["update"]["id"] == again.json()["update"]["id"]
    # The same key with another body (or for another call) is a conflict, and sends nothing.
    other = await client.post(f"/v1/voice/calls/{call_id}", headers=h, json={"send_digits": "2"})
    assert other.status_code == 409 and other.json()["error"] == {
        "code": "idempotency_key_reused", "field": "Idempotency-Key",
        "message": "this Idempotency-Key was used with a different body or call"}
    cmds = await commands(prefix, call_id, 2)
    assert [c["type"] for c in cmds] == ["PlaceCall", "UpdateCall"]
    # An update's key never replays a create (nor the other way round).
    r = await client.post("/v1/voice/calls", headers=h, json=DOCS_BODY)
    assert r.status_code == 201 and r.json()["id"] != call_id


async def test_status_completed_is_the_hangup_path_once_per_call(client, acct, prefix):
    call_id = await place(client, acct)
    r = await client.post(f"/v1/voice/calls/{call_id}", headers=acct.headers, json={"status": "completed"})
    assert r.status_code == 202 and "Idempotent-Replayed" not in r.headers
    # A hangup after it (either way) sends nothing more.
    again = await client.post(f"/v1/voice/calls/{call_id}/hangup", headers=acct.headers)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    third = await client.post(f"/v1/voice/calls/{call_id}", headers=acct.headers, json={"status": "completed"})
    assert third.status_code == 202 and third.json()["update"]["id"] is None
    cmds = await commands(prefix, call_id, 2)
    assert [(c["type"], c["data"]) for c in cmds] == [("PlaceCall", cmds[0]["data"]),
                                                      ("UpdateCall", {"status": "completed"})]


async def test_a_call_that_ended_is_409_call_not_live(client, acct, pg):
    call_id = await place(client, acct)
    await ended(pg, acct, call_id)
    r = await client.post(f"/v1/voice/calls/{call_id}", headers=acct.headers, json={"send_digits": "1"})
    assert r.status_code == 409
    assert r.json()["error"] == {"code": "call_not_live", "field": "status", "message": "the call is already completed"}


async def test_unknown_calls_and_other_accounts_calls_are_404(client, acct, other):
    r = await client.post("/v1/voice/calls/call_doesnotexist", headers=acct.headers, json={"send_digits": "1"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "call_not_found"
    call_id = await place(client, acct)
    r = await client.post(f"/v1/voice/calls/{call_id}", headers=other.headers, json={"send_digits": "1"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "call_not_found"


@pytest.mark.parametrize("body,status,code,field", [
    ({}, 422, "empty_update", None),
    ({"tts": {"text": "x"}, "audio_url": "https://example.com/a.wav"}, 422, "conflicting_fields", "audio_url"),
    ({"status": "completed", "tts": {"text": "x"}}, 422, "conflicting_fields", "status"),
    ({"send_digits": "12x"}, 422, "invalid_field", "send_digits"),
    ({"recording": "rewind"}, 422, "invalid_field", "recording"),
    ({"audio_url": "http://127.0.0.1:8080/a.wav"}, 422, "invalid_url", "audio_url"),
    ({"flow_id": "flow_nope"}, 422, "flow_not_found", "flow_id"),
    ({"bogus": 1}, 422, "unknown_field", "bogus"),
])
async def test_bad_update_bodies(client, acct, prefix, body, status, code, field):
    call_id = await place(client, acct)
    r = await client.post(f"/v1/voice/calls/{call_id}", headers=acct.headers, json=body)
    assert r.status_code == status, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["field"]) == (code, field)


async def test_malformed_json_and_keys(client, acct):
    call_id = await place(client, acct)
    r = await client.post(f"/v1/voice/calls/{call_id}", headers={**acct.headers, "Content-Type": "application/json"},
                          content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = await client.post(f"/v1/voice/calls/{call_id}", headers={**acct.headers, "Idempotency-Key": "has space"},
                          json={"send_digits": "1"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_idempotency_key"
    r = await client.post(f"/v1/voice/calls/{call_id}", json={"send_digits": "1"})
    assert r.status_code == 401


async def test_redirect_to_a_stored_flow_checks_it_and_its_step(client, acct, prefix):
    flow = {"start": "a", "steps": {"a": {"kind": "say", "text": "Hi.", "next": "b"}, "b": {"kind": "hangup"}}}
    r = await client.post("/v1/voice/flows", headers=acct.headers, json=flow)
    assert r.status_code == 201, r.text
    flow_id = r.json()["id"]
    call_id = await place(client, acct)
    bad = await client.post(f"/v1/voice/calls/{call_id}", headers=acct.headers, json={"flow_id": flow_id, "step": "z"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_step"
    ok = await client.post(f"/v1/voice/calls/{call_id}", headers=acct.headers, json={"flow_id": flow_id, "step": "b"})
    assert ok.status_code == 202, ok.text


async def test_create_validates_status_callback_events_and_time_limit(client, acct):
    r = await client.post("/v1/voice/calls", headers=acct.headers,
                          json={**DOCS_BODY, "status_callback_events": ["ringing", "hung-up"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "status_callback_events.1"
    r = await client.post("/v1/voice/calls", headers=acct.headers, json={**DOCS_BODY, "time_limit": 0})
    assert r.status_code == 422 and r.json()["error"]["field"] == "time_limit"
    r = await client.post("/v1/voice/calls", headers=acct.headers,
                          json={**DOCS_BODY, "status_callback_events": ["answered", "completed"], "time_limit": 60})
    assert r.status_code == 201, r.text


async def test_get_recording_lists_the_paused_spans(client, acct, pg):
    import uuid
    from datetime import timezone

    call_id = await place(client, acct)
    rec_id = f"rec_{call_id[5:]}"
    spans = [{"start_ms": 2000, "end_ms": 4500}]
    await pg.execute(
        "INSERT INTO projection.recordings (id, call_id, account_id, wav_ref, mp3_ref, duration_ms, size_bytes,"
        " sha256, channels, created_at) VALUES ($1, $2, $3, 'sha256:' || repeat('a', 64) || '.wav', NULL, 9000,"
        " 1000, '', 'mono', now())", rec_id, call_id, acct.id)
    r = await client.get(f"/v1/voice/calls/{call_id}/recording", headers=acct.headers)
    assert r.status_code == 200 and "paused_spans" not in r.json()  # never paused: the docs' shape exactly
    await pg.execute(
        "INSERT INTO projection.call_events (event_id, call_id, account_id, type, version, occurred_at,"
        " kafka_partition, kafka_offset, data) VALUES ($1, $2, $3, 'recording.completed', 1, $4, 0, 7, $5)",
        uuid.uuid4(), call_id, acct.id, datetime.now(timezone.utc),
        {"recording_id": rec_id, "wav_ref": "sha256:x.wav", "duration_ms": 9000, "paused_spans": spans})
    r = await client.get(f"/v1/voice/calls/{call_id}/recording", headers=acct.headers)
    assert r.json()["paused_spans"] == spans
