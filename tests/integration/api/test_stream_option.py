"""POST /v1/voice/calls with a `stream`: carried to the PlaceCall as given, or 422 with code and field."""

from __future__ import annotations

import orjson
import pytest

from tests.integration.api.conftest import DOCS_BODY
from tests.integration.api.helpers import read_topic

pytestmark = pytest.mark.integration
BOT = {"url": "wss://bot.example.com/media?token=abc", "track": "both", "bidirectional": True,
       "parameters": {"customer": "42"}}


async def test_a_bot_call_needs_no_prompt_and_its_stream_is_carried(client, acct, prefix):
    body = {k: v for k, v in DOCS_BODY.items() if k != "tts"}
    r = await client.post("/v1/voice/calls", headers=acct.headers, json={**body, "stream": BOT})
    assert r.status_code == 201, r.text
    [rec] = await read_topic(prefix + "voice.call.commands", 1)
    assert orjson.loads(rec.value)["data"]["stream"] == BOT


@pytest.mark.parametrize("stream, code, field", [
    ({"url": "ws://bot.example.com/media"}, "invalid_url", "stream.url"),  # the API runs in production mode here
    ({"url": "wss://169.254.169.254/"}, "invalid_url", "stream.url"),
    ({"url": "wss://bot.example.com", "track": "up"}, "invalid_field", "stream.track"),
    ({"url": "wss://bot.example.com", "extra": 1}, "unknown_field", "stream.extra"),
])
async def test_bad_streams_are_422(client, acct, stream, code, field, monkeypatch):
    monkeypatch.setenv("CANARY_ENV", "production")
    monkeypatch.delenv("CANARY_ALLOW_PRIVATE_URLS", raising=False)
    r = await client.post("/v1/voice/calls", headers=acct.headers, json={**DOCS_BODY, "stream": stream})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert (err["code"], err["field"]) == (code, field)
