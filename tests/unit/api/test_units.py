"""Pure parts of the API: intake validation, ids and keys, signing, cursors, rate limit, drift."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import orjson
import pytest

from services.api import signing, store
from services.api.runtime import TokenBucket
from services.common import accounts
from services.lib.intake import check_place_call

BODY = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Hello <break time='1s'/> there"},
        "carrier": "sandbox"}


def verified(account_id: str, number: str) -> bool:
    return account_id == "acct_1" and number == "+15559876543"


async def test_intake_accepts_and_normalises():
    model, errors = await check_place_call({**BODY, "to": "+1 555 123 4567"}, "acct_1", verified)
    assert errors == [] and model.to == "+15551234567" and model.from_ == "+15559876543"


async def test_intake_async_lookup_and_unverified():
    async def lookup(a: str, n: str) -> bool:
        return False

    model, errors = await check_place_call(BODY, "acct_1", lookup)
    assert model is None and errors == [{"code": "number_not_verified", "field": "from", "message": errors[0]["message"]}]


@pytest.mark.parametrize("data,code,field", [
    ("not a dict", "invalid_request", None),
    ({"to": "+15551234567", "from": "+15559876543"}, "missing_field", "tts"),
    ({**BODY, "audio_url": "https://x.example/a.mp3"}, "conflicting_fields", "audio_url"),
    ({**BODY, "tts": {"text": "hi", "voice": "nope"}}, "invalid_voice", "tts.voice"),
    ({**BODY, "tts": {"text": "<speak>unclosed"}}, "invalid_ssml", "tts.text"),
    ({**BODY, "carrier": "pstn"}, "invalid_field", "carrier"),
    ({**BODY, "gather": {"type": "speech", "finish_on_key": "#"}}, "invalid_field", "gather.finish_on_key"),
    ({**BODY, "webhook_url": "file:///etc/passwd"}, "invalid_url", "webhook_url"),
    # live transcript webhooks: a real URL, and only for a transcribed call with somewhere to send them
    ({**BODY, "transcribe": True, "transcribe_webhook_url": "ftp://x.example/live"}, "invalid_url",
     "transcribe_webhook_url"),
    ({**BODY, "transcribe_webhook_url": "https://x.example/live"}, "invalid_field", "transcribe_webhook_url"),
    ({**BODY, "transcribe": True, "transcribe_webhooks": True}, "missing_field", "webhook_url"),
    ({**BODY, "transcribe": True, "transcribe_webhooks": "yes"}, "invalid_field", "transcribe_webhooks"),
    # languages: a BCP-47 tag whisper knows, or auto; transcribe_language only for a transcribed call
    ({**BODY, "transcribe": True, "transcribe_language": "klingon"}, "invalid_field", "transcribe_language"),
    ({**BODY, "transcribe_language": "es"}, "invalid_field", "transcribe_language"),
    ({**BODY, "gather": {"type": "speech", "language": "xx-YY"}}, "invalid_field", "gather.language"),
    ({**BODY, "flow": {"a": "\x00"}}, "invalid_character", "flow.a"),
])
async def test_intake_errors(data, code, field):
    model, errors = await check_place_call(data, "acct_1", verified)
    assert model is None
    assert (errors[0]["code"], errors[0]["field"]) == (code, field), errors
    assert all(set(e) == {"code", "field", "message"} for e in errors)


def test_ids_and_keys():
    ids = {accounts.new_id("call") for _ in range(2000)}
    assert len(ids) == 2000 and all(re.fullmatch(r"call_[0-9A-Za-z]{20}", i) for i in ids)
    assert accounts.key_mode("sk_test_" + "a" * 32) == "test"
    assert accounts.key_mode("sk_live_" + "Z9" * 16) == "live"
    assert accounts.key_mode("sk_test_short") is None and accounts.key_mode("pk_test_" + "a" * 32) is None
    assert len(accounts.hash_key("sk_test_x")) == 32


def test_signing_round_trip():
    exp = int(time.time()) + 60
    sig = signing.signature("rec_1", "mp3", exp)
    assert signing.verify("rec_1", "mp3", exp, sig)
    assert not signing.verify("rec_1", "wav", exp, sig)
    assert not signing.verify("rec_2", "mp3", exp, sig)
    assert not signing.verify("rec_1", "mp3", exp - 3600, signing.signature("rec_1", "mp3", exp - 3600))
    assert "/v1/voice/recordings/rec_1/media?format=mp3&expires=" in signing.media_url("rec_1", "mp3")


def test_cursor_round_trip_and_garbage():
    at = datetime(2024, 1, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
    assert store.decode_cursor(store.encode_cursor(at, "call_abc")) == (at, "call_abc")
    for bad in ("", "!!!", "bm90LWEtY3Vyc29y", store.encode_cursor(at.replace(tzinfo=None), "x")):
        assert store.decode_cursor(bad) is None


def test_list_query_parameters_are_numbered():
    sql, args = store.list_query("queued", "+1555", None, None, None, None, 10)
    assert args == ["queued", "+1555", 11]
    assert "$5" not in sql and "c.status = $2" in sql and "LIMIT $4" in sql
    sql, _ = store.list_query("completed", None, None, None, None, None, 10)
    assert "call_requests r WHERE" not in sql  # unprojected requests are only ever queued


def test_token_bucket(monkeypatch):
    from types import SimpleNamespace

    from services.api import runtime

    now = [1000.0]  # the bucket's clock, moved by the test only
    monkeypatch.setattr(runtime, "time", SimpleNamespace(monotonic=lambda: now[0]))
    b = TokenBucket(rate=2, burst=3)
    assert [b.take() for _ in range(3)] == [0, 0, 0]
    assert b.take() == pytest.approx(0.5)  # empty: the next token is 1/rate away
    now[0] += 0.25
    assert b.take() == pytest.approx(0.25)
    now[0] += 0.25
    assert b.take() == 0  # refilled at `rate`
    now[0] += 100
    assert [b.take() for _ in range(4)] == [0, 0, 0, pytest.approx(0.5)]  # never more than `burst`


def test_openapi_is_current():
    """schemas/openapi.json matches the app for the API's own paths (run `canary-voice schemas openapi`)."""
    from services.api.openapi import OPENAPI_PATH, document

    live = document()
    stored = orjson.loads(OPENAPI_PATH.read_bytes())
    mine = re.compile(r"^/(v1/voice/(calls|numbers|voices|recordings)|healthz|readyz)")
    for path, ops in live["paths"].items():
        if mine.match(path):
            assert orjson.loads(orjson.dumps(ops)) == stored["paths"].get(path), f"{path}: regenerate schemas/openapi.json"
    for name in ("CallCreate", "CallCreated", "Call", "ErrorResponse", "Recording"):
        assert stored["components"]["schemas"][name] == orjson.loads(orjson.dumps(live["components"]["schemas"][name]))


def test_asyncapi_is_current():
    import yaml

    from services.ops.asyncapi import ASYNCAPI_PATH, document

    stored = yaml.safe_load(ASYNCAPI_PATH.read_text())
    assert stored == yaml.safe_load(yaml.safe_dump(document()))
    assert stored["asyncapi"].startswith("3.")
    assert {c["address"] for c in stored["channels"].values()} == {
        "voice.call.commands", "voice.call.events", "voice.media.audio", "voice.dlq"}
    from pathlib import Path

    root = ASYNCAPI_PATH.parent
    for msg in stored["components"]["messages"].values():
        for part in msg["payload"].get("allOf", []):
            ref = part.get("$ref") or part.get("properties", {}).get("data", {}).get("$ref")
            if ref:
                assert (root / ref).exists(), ref
    assert Path(root / "commands" / "PlaceCall.v1.json").exists()
