"""Every error status and code, in the one error shape; never a 5xx for bad input."""

from __future__ import annotations

import pytest

from tests.integration.api.conftest import DOCS_BODY

pytestmark = pytest.mark.integration

URL = "/v1/voice/calls"


def err(r, status: int, code: str | None = None, field: str | None = "-"):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    if field != "-":
        assert body["error"]["field"] == field, body
    return body["error"]


async def test_auth_errors(client, acct):
    err(await client.post(URL, json=DOCS_BODY), 401, "missing_api_key")
    err(await client.post(URL, json=DOCS_BODY, headers={"Authorization": "Basic abc"}), 401, "invalid_api_key")
    err(await client.post(URL, json=DOCS_BODY, headers={"Authorization": "Bearer sk_test_nope"}), 401,
        "invalid_api_key")
    r = await client.post(URL, json=DOCS_BODY, headers={"Authorization": "Bearer sk_test_" + "A" * 32})
    err(r, 401, "invalid_api_key")
    assert r.headers["www-authenticate"].startswith("Bearer")
    err(await client.get("/v1/voice/numbers"), 401, "missing_api_key")


async def test_revoked_key_is_401(client, acct, pg):
    await pg.execute("UPDATE api_keys SET revoked_at = now() WHERE account_id = $1", acct.id)
    client._transport.app.state.runtime._keys.clear()  # the API caches keys for CANARY_API_AUTH_TTL
    err(await client.post(URL, json=DOCS_BODY, headers=acct.headers), 401, "invalid_api_key")


async def test_body_errors(client, acct):
    h = acct.headers
    err(await client.post(URL, content=b"{nope", headers={**h, "Content-Type": "application/json"}), 400,
        "invalid_json")
    err(await client.post(URL, content=b"", headers={**h, "Content-Type": "application/json"}), 400, "invalid_json")
    err(await client.post(URL, content=b"to=+1555", headers={**h, "Content-Type": "application/x-www-form-urlencoded"}),
        415, "unsupported_media_type")
    err(await client.post(URL, content=b"{}", headers=h), 415, "unsupported_media_type")
    big = {**DOCS_BODY, "flow": {"x": "a" * 200_000}}
    err(await client.post(URL, json=big, headers=h), 413, "payload_too_large")
    err(await client.post(URL, json=[1, 2], headers=h), 422, "invalid_request")
    err(await client.post(URL, content=b'{"to": "\\ud800"}', headers={**h, "Content-Type": "application/json"}),
        400, "invalid_json")
    # JSON with a charset and +json types are fine
    r = await client.post(URL, content=b'{"to":"+15551234567","from":"+15559876543","tts":{"text":"hi"}}',
                          headers={**h, "Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 201


INVALID = [
    ({"to": None}, "invalid_field", "to"),
    ({"to": "12345"}, "invalid_phone_number", "to"),
    ({"to": "+1555"}, "invalid_phone_number", "to"),
    ({"to": 15551234567}, "invalid_field", "to"),
    ({"from": "nope"}, "invalid_phone_number", "from"),
    ({"tts": None}, "missing_field", "tts"),
    ({"audio_url": "https://example.com/a.mp3"}, "conflicting_fields", "audio_url"),
    ({"tts": {"text": ""}}, "invalid_field", "tts.text"),
    ({"tts": {"text": "hi", "voice": "xx-XX-Nope"}}, "invalid_voice", "tts.voice"),
    ({"tts": {"text": "<speak><say-as>1</speak>"}}, "invalid_ssml", "tts.text"),
    ({"tts": {"text": "hi", "speed": 9}}, "invalid_field", "tts.speed"),
    ({"tts": {"text": "hi", "pitch": "high"}}, "invalid_field", "tts.pitch"),
    ({"tts": {"text": "hi", "volume": 3}}, "unknown_field", "tts.volume"),
    ({"tts": "hello"}, "invalid_field", "tts"),
    ({"record": "yes"}, "invalid_field", "record"),
    ({"transcribe": 1}, "invalid_field", "transcribe"),
    ({"recording_channels": "stereo"}, "invalid_field", "recording_channels"),
    ({"gather": {"type": "morse"}}, "invalid_field", "gather.type"),
    ({"gather": {"num_digits": 0}}, "invalid_field", "gather.num_digits"),
    ({"gather": {"finish_on_key": "x"}}, "invalid_field", "gather.finish_on_key"),
    ({"gather": {"timeout": -1}}, "invalid_field", "gather.timeout"),
    ({"gather": {"type": "speech", "num_digits": 4}}, "invalid_field", "gather.num_digits"),
    ({"gather": {"webhook_url": "ftp://x.example/"}}, "invalid_url", "gather.webhook_url"),
    ({"webhook_url": "javascript:alert(1)"}, "invalid_url", "webhook_url"),
    ({"timeout": 0}, "invalid_field", "timeout"),
    ({"timeout": 601}, "invalid_field", "timeout"),
    ({"timeout": "30"}, "invalid_field", "timeout"),
    ({"surprise": 1}, "unknown_field", "surprise"),
    ({"carrier": "sip"}, "unknown_field", "carrier"),
    ({"created_at": "2020-01-01T00:00:00Z"}, "unknown_field", "created_at"),
    ({"to": "+1555123\u00004567"}, "invalid_character", "to"),
]


@pytest.mark.parametrize("patch,code,field", INVALID, ids=[f"{c}:{f}:{i}" for i, (_, c, f) in enumerate(INVALID)])
async def test_422_per_field(client, acct, patch, code, field):
    body = {**DOCS_BODY, **patch}
    if "audio_url" in patch and patch.get("tts", DOCS_BODY["tts"]) is not None:
        pass  # tts + audio_url: conflicting
    body = {k: v for k, v in body.items()}
    err(await client.post(URL, json=body, headers=acct.headers), 422, code, field)


async def test_missing_fields(client, acct):
    for k in ("to", "from"):
        body = {x: v for x, v in DOCS_BODY.items() if x != k}
        err(await client.post(URL, json=body, headers=acct.headers), 422, "missing_field", k)
    body = {"to": DOCS_BODY["to"], "from": DOCS_BODY["from"]}
    err(await client.post(URL, json=body, headers=acct.headers), 422, "missing_field", "tts")


async def test_audio_url_private_address_is_refused(client, acct, monkeypatch):
    monkeypatch.delenv("CANARY_ALLOW_PRIVATE_URLS", raising=False)
    body = {"to": DOCS_BODY["to"], "from": DOCS_BODY["from"], "audio_url": "http://169.254.169.254/latest"}
    err(await client.post(URL, json=body, headers=acct.headers), 422, "invalid_url", "audio_url")


async def test_403_unverified_from(client, acct):
    err(await client.post(URL, json={**DOCS_BODY, "from": "+15550009999"}, headers=acct.headers), 403,
        "number_not_verified", "from")


async def test_404s(client, acct):
    err(await client.get("/v1/voice/calls/call_doesnotexist00000000", headers=acct.headers), 404, "call_not_found")
    err(await client.get("/v1/voice/calls/not-a-call-id", headers=acct.headers), 404, "call_not_found")
    err(await client.get("/v1/voice/nothing-here", headers=acct.headers), 404, "not_found")
    err(await client.delete("/v1/voice/calls", headers=acct.headers), 405, "method_not_allowed")
    call_id = (await client.post(URL, json=DOCS_BODY, headers=acct.headers)).json()["id"]
    err(await client.get(f"/v1/voice/calls/{call_id}/recording", headers=acct.headers), 404, "recording_not_found")


async def test_idempotency_key_validation(client, acct):
    err(await client.post(URL, json=DOCS_BODY, headers={**acct.headers, "Idempotency-Key": "x" * 300}), 400,
        "invalid_idempotency_key", "Idempotency-Key")


async def test_query_parameter_errors(client, acct):
    err(await client.get("/v1/voice/calls", params={"limit": 0}, headers=acct.headers), 422, "invalid_parameter",
        "limit")
    err(await client.get("/v1/voice/calls", params={"limit": "x"}, headers=acct.headers), 422, "invalid_parameter")
    err(await client.get("/v1/voice/calls", params={"to": "x\x00"}, headers=acct.headers), 422, "invalid_parameter")
    err(await client.get("/v1/voice/calls", params={"created_after": "yesterday"}, headers=acct.headers), 422,
        "invalid_parameter")


async def test_produce_failure_rolls_back(acct, monkeypatch, pg, stack):
    """A started producer whose send fails (topic missing): 503, the request abandoned, no key left behind."""
    import httpx

    from services.api.app import create_app
    from services.api.runtime import Runtime

    monkeypatch.setenv("CANARY_TOPIC_PREFIX", "tnotopics.")
    monkeypatch.setenv("CANARY_API_SEND_TIMEOUT", "1.5")
    rt = Runtime()
    await rt.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(rt)), base_url="http://t") as c:
            r = await c.post(URL, json=DOCS_BODY, headers=acct.headers)
            err(r, 503, "kafka_unavailable")
            assert "retry-after" in r.headers
            r = await c.post(URL, json=DOCS_BODY, headers={**acct.headers, "Idempotency-Key": "rb"})
            err(r, 503, "kafka_unavailable")
    finally:
        await rt.stop()
    # Nothing accepted: each refused request is kept only as 'abandoned' (so a late landing
    # of its PlaceCall is refused by the orchestrator), and no call is listed.
    states = await pg.fetch("SELECT state FROM call_requests WHERE account_id = $1", acct.id)
    assert [r["state"] for r in states] == ["abandoned", "abandoned"], states
    assert await pg.fetchval("SELECT count(*) FROM idempotency_keys WHERE account_id = $1", acct.id) == 0
