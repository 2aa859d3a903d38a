"""U+0000 is refused where outside data enters, with where it was, never stored or published.

Postgres cannot hold NUL in text or jsonb: accepted at an edge, it would be dead-lettered
far downstream (or, before, stop a consumer). Each boundary: HTTP bodies (every JSON
endpoint), the Kafka intake of PlaceCall, a flow webhook's answer.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import orjson
import pytest

from events import new_envelope
from services.common.kafka import ensure_topics
from services.lib.intake import check_place_call
from tests.api_app import new_account, running_app

pytestmark = pytest.mark.integration

CALL = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Hello"}}


@pytest.mark.parametrize("path, body, field", [
    ("/v1/voice/calls", {**CALL, "tts": {"text": "Your code is \u0000 1 2 3"}}, "tts.text"),
    ("/v1/voice/calls", {**CALL, "webhook_url\u0000": "x"}, "webhook_url\\u0000"),
    ("/v1/voice/flows", {"name": "menu", "start": "a", "steps": {"a": {"say": "Hi\u0000", "next": None}}},
     "steps.a.say"),
    ("/v1/voice/sandbox/callees", {"number": "+15557771001", "say": "yes\u0000please"}, "say"),
    ("/v1/voice/numbers", {"number": "+1555\u00009876"}, "number"),
])
async def test_every_json_endpoint_refuses_nul_with_the_field(monkeypatch, path, body, field):
    prefix = f"nul{uuid.uuid4().hex[:6]}."
    await ensure_topics(prefix=prefix)
    _, _, key, _ = await new_account("nul")
    async with running_app(prefix, monkeypatch) as app:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
            r = await http.post(path, content=orjson.dumps(body),
                                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_character" and r.json()["error"]["field"] == field, r.text


async def test_the_kafka_intake_rejects_a_placecall_with_nul_naming_the_field():
    data = {**CALL, "tts": {"text": "a\u0000b"}, "carrier": "sandbox"}
    model, errors = await check_place_call(data, "acct_x", lambda account_id, number: True)
    assert model is None
    assert errors == [{"code": "invalid_character", "field": "tts.text",
                       "message": "strings must not contain NUL (U+0000)"}]


async def test_a_flow_webhook_answer_with_nul_is_a_failed_step_not_an_answer(monkeypatch):
    from services.common.ssrf import guarded_async_client
    from services.webhooks.flow_step import ask_app

    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")  # the app is on loopback
    answer = orjson.dumps({"steps": [{"kind": "say", "text": "Your balance is \u0000 5 dollars."}]})

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (len(answer), answer))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(app, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        req = new_envelope("flow.webhook.requested", "call_x", "acct_x",
                           {"url": f"http://127.0.0.1:{port}/ivr", "step": "billing"})
        async with guarded_async_client() as client:
            out = await ask_app(client, "whsec_x", req)
    finally:
        server.close()
        await server.wait_closed()
    assert out.type == "flow.webhook.failed", out.data
    assert out.data["reason"] == "answer has a NUL (U+0000) in steps[0].text", out.data
    assert b"\\u0000" not in orjson.dumps(out.to_dict())
