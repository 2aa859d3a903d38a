"""The `stream` call option and flow step: what intake and flow validation refuse, and why."""

from __future__ import annotations

import pytest

from services.common.ssrf import SsrfError, check_ws_url
from services.lib.flows.validate import validate_flow
from services.lib.intake import check_place_call

BODY = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Hello"}, "carrier": "sandbox"}
WSS = "wss://bot.example.com/media"


def verified(account_id: str, number: str) -> bool:
    return True


@pytest.fixture
def production(monkeypatch):
    monkeypatch.setenv("CANARY_ENV", "production")
    monkeypatch.delenv("CANARY_ALLOW_PRIVATE_URLS", raising=False)


@pytest.fixture
def development(monkeypatch):
    monkeypatch.setenv("CANARY_ENV", "development")
    monkeypatch.delenv("CANARY_ALLOW_PRIVATE_URLS", raising=False)


async def test_a_stream_is_accepted_with_defaults(production):
    model, errors = await check_place_call({**BODY, "stream": {"url": WSS}}, "acct_1", verified)
    assert errors == []
    assert (model.stream.track, model.stream.bidirectional, model.stream.parameters) == ("inbound", False, {})


async def test_a_bidirectional_stream_needs_no_prompt(production):
    body = {k: v for k, v in BODY.items() if k != "tts"}
    model, errors = await check_place_call({**body, "stream": {"url": WSS, "bidirectional": True}}, "acct_1",
                                           verified)
    assert errors == [] and model.tts is None
    # A one-way stream only listens: the call still needs something to say.
    model, errors = await check_place_call({**body, "stream": {"url": WSS}}, "acct_1", verified)
    assert model is None and errors[0]["code"] == "missing_field"


@pytest.mark.parametrize("stream, code, field", [
    ({"url": "https://bot.example.com/media"}, "invalid_url", "stream.url"),  # not a WebSocket URL
    ({"url": "ws://bot.example.com/media"}, "invalid_url", "stream.url"),  # cleartext outside development
    ({"url": "wss://127.0.0.1/media"}, "invalid_url", "stream.url"),  # loopback: SSRF
    ({"url": "wss://169.254.169.254/latest"}, "invalid_url", "stream.url"),  # cloud metadata: SSRF
    ({"url": "wss://10.0.0.5/media"}, "invalid_url", "stream.url"),  # private range: SSRF
    ({"url": "wss://user:pw@bot.example.com/"}, "invalid_url", "stream.url"),  # credentials in the URL
    ({"url": "wss:///nohost"}, "invalid_url", "stream.url"),
    ({}, "missing_field", "stream.url"),
    ({"url": WSS, "track": "sideways"}, "invalid_field", "stream.track"),
    ({"url": WSS, "bidirectional": "yes"}, "invalid_field", "stream.bidirectional"),  # strict: no coercion
    ({"url": WSS, "parameters": {"n": 5}}, "invalid_field", "stream.parameters.n"),  # values are strings
    ({"url": WSS, "parameters": {"k" * 200: "v"}}, "invalid_field", "stream.parameters"),
    ({"url": WSS, "colour": "blue"}, "unknown_field", "stream.colour"),
    ({"url": "wss://x.example/" + "a" * 2048}, "invalid_field", "stream.url"),
    ("wss://bot.example.com", "invalid_field", "stream"),
])
async def test_bad_streams_are_refused_with_code_and_field(production, stream, code, field):
    model, errors = await check_place_call({**BODY, "stream": stream}, "acct_1", verified)
    assert model is None
    assert (errors[0]["code"], errors[0]["field"]) == (code, field), errors


def test_ws_is_allowed_in_development_only(development, monkeypatch):
    assert check_ws_url("ws://bot.example.com:8765/media") == ("bot.example.com", 8765)
    assert check_ws_url("wss://bot.example.com/media") == ("bot.example.com", 443)
    with pytest.raises(SsrfError):  # loopback still needs the explicit opt-in
        check_ws_url("ws://127.0.0.1:8765/")
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")
    assert check_ws_url("ws://127.0.0.1:8765/") == ("127.0.0.1", 8765)
    monkeypatch.setenv("CANARY_ENV", "production")
    with pytest.raises(SsrfError, match="wss"):
        check_ws_url("ws://127.0.0.1:8765/")


def _flow(step: dict) -> dict:
    return {"start": "bot", "steps": {"bot": {"kind": "stream", **step, "next": "bye"}, "bye": {"kind": "hangup"}}}


def test_flow_stream_step_is_validated_like_the_others():
    assert validate_flow(_flow({"url": WSS, "track": "both", "bidirectional": True,
                                "parameters": {"lang": "en"}})) == []
    bad = {
        "no url": {},
        "http url": {"url": "https://bot.example.com"},
        "bad track": {"url": WSS, "track": "left"},
        "non-string parameter": {"url": WSS, "parameters": {"n": 1}},
        "unknown field": {"url": WSS, "volume": 3},
    }
    for why, step in bad.items():
        errors = validate_flow(_flow(step))
        assert [(e.field, e.code) for e in errors] == [("steps.bot", "invalid_step")], why
