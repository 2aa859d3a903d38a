"""Inbound routes of numbers through the real API (Postgres, Kafka): PATCH /v1/voice/numbers/{n},
its refusals, and a sandbox call-in landing on the event log as call.received."""

from __future__ import annotations

import orjson

from events import decode
from services.common import db
from services.lib.flows import store as flows
from tests.integration.api.helpers import read_topic

NUMBER = "+15559876543"  # the account's own number (make_account)


async def test_patch_sets_the_route_and_shows_it_in_the_list(client, acct):
    r = await client.patch(f"/v1/voice/numbers/{NUMBER}", headers=acct.headers,
                           json={"voice_url": "https://app.example.com/voice", "webhook_url": "https://app.example.com/s"})
    assert r.status_code == 200, r.text
    assert r.json()["voice_url"] == "https://app.example.com/voice" and r.json()["flow_id"] is None
    conn = await db.connect()
    try:
        flow = await flows.create(conn, acct.id, {"start": "a", "steps": {"a": {"kind": "hangup"}}})
    finally:
        await conn.close()
    r = await client.patch(f"/v1/voice/numbers/{NUMBER}", headers=acct.headers, json={"flow_id": flow["id"]})
    assert r.status_code == 200 and r.json()["flow_id"] == flow["id"] and r.json()["voice_url"] is None
    listed = (await client.get("/v1/voice/numbers", headers=acct.headers)).json()["data"]
    assert [(n["number"], n["flow_id"], n["webhook_url"]) for n in listed] == [
        (NUMBER, flow["id"], "https://app.example.com/s")]


async def test_bad_routes_are_4xx_with_the_code_and_field(client, acct):
    cases = [({"voice_url": "file:///etc/passwd"}, 422, "invalid_url", "voice_url"),
             ({"voice_url": "http://169.254.169.254/latest"}, 422, "invalid_url", "voice_url"),
             ({"voice_url": "https://a.example/", "flow_id": "flow_x"}, 422, "conflicting_fields", "flow_id"),
             ({"flow_id": "flow_nope"}, 422, "flow_not_found", "flow_id"),
             ({"caller": 1}, 422, "unknown_field", "caller"),
             ({}, 422, "empty_update", None)]
    for body, status, code, field in cases:
        r = await client.patch(f"/v1/voice/numbers/{NUMBER}", headers=acct.headers, json=body)
        assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["field"]) == (status, code, field), body
    r = await client.patch("/v1/voice/numbers/+15550000001", headers=acct.headers, json={"voice_url": "https://a.example/"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "number_not_found"


async def test_sandbox_call_in_is_a_call_received_on_the_log(client, acct, prefix):
    r = await client.post("/v1/voice/sandbox/calls-in", headers=acct.headers, json={"from": "+15551230001", "to": NUMBER})
    assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["field"]) == (422, "number_not_routed", "to")
    r = await client.post("/v1/voice/sandbox/calls-in", headers=acct.headers,
                          json={"from": "+15551230001", "to": "+15550000001"})
    assert (r.status_code, r.json()["error"]["code"]) == (404, "number_not_found")
    await client.patch(f"/v1/voice/numbers/{NUMBER}", headers=acct.headers, json={"voice_url": "https://a.example/v"})
    r = await client.post("/v1/voice/sandbox/calls-in", headers=acct.headers,
                          json={"from": "+15551230001", "to": NUMBER, "press": "1", "after": "2s"})
    assert r.status_code == 201, r.text
    call = r.json()
    assert call["direction"] == "inbound" and call["status"] == "queued"
    live = {"Authorization": f"Bearer {acct.live_key}"}
    r = await client.post("/v1/voice/sandbox/calls-in", headers=live, json={"from": "+15551230001", "to": NUMBER})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "sandbox_only")
    [rec] = [x for x in await read_topic(prefix + "voice.call.events", 1) if orjson.loads(x.value)["call_id"] == call["id"]]
    env = decode(rec.value)
    assert env.type == "call.received" and dict(rec.headers)["type"] == b"call.received"
    assert env.data["voice_url"] == "https://a.example/v" and env.data["caller"]["press"] == "1"
    assert env.data["carrier"] == "sandbox" and env.data["from"] == "+15551230001"
