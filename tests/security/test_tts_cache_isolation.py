"""The TTS render cache must not tell one account what another rendered.

Before: the cache key was (text, voice, speed, pitch) for everyone, and every render
event's `cache_hit` was in the public timeline. Account B placing a call that says
"Your code is 123456" learnt from `cache_hit: true` that some account had just rendered
exactly that: another account's one-time code, confirmed by guessing. Now the cache is
per account, and internal fields (cache_hit, media-store refs, timer tokens) stay out of
the timeline and of webhook bodies (events/public.py)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone

import pytest

from events import new_envelope
from events.public import INTERNAL_FIELDS, public_data
from services.common import audio
from services.common.media_store import LocalMediaStore
from services.tts.render import Renderer
from services.tts.worker import TtsHandler
from services.webhooks.payloads import WEBHOOK_TYPES, payload

pytestmark = pytest.mark.integration

CODE = {"text": "Your verification code is <say-as interpret-as='digits'>482913</say-as>.",
        "voice": "en-US-Neural2-F", "speed": 1.0, "pitch": 0.0}


class CountingEngine:
    """A TTS engine that renders silence and counts what it was asked to render."""

    def __init__(self) -> None:
        self.calls = 0

    def synthesize(self, segments, voice, speed=1.0, pitch=0.0) -> bytes:
        self.calls += 1
        return audio.silence(200)


def tts_requested(account_id: str):
    return new_envelope("tts.requested", "call_" + uuid.uuid4().hex[:20], account_id, dict(CODE))


async def test_one_accounts_renders_are_not_another_accounts_cache_hits(tmp_path):
    engine = CountingEngine()
    handler = TtsHandler(Renderer(LocalMediaStore(tmp_path), engines={"piper": engine, "espeak": engine}))
    victim, attacker = "acct_" + uuid.uuid4().hex[:10], "acct_" + uuid.uuid4().hex[:10]

    first = await handler(tts_requested(victim))
    assert first[0].type == "tts.rendered" and first[0].data["cache_hit"] is False
    guess = await handler(tts_requested(attacker))
    assert guess[0].type == "tts.rendered" and guess[0].data["cache_hit"] is False, "another account's render"
    assert engine.calls == 2  # rendered again, in the attacker's own namespace
    again = await handler(tts_requested(victim))  # an account's own cache still works
    assert again[0].data["cache_hit"] is True and engine.calls == 2

    # concurrent twins are shared within an account only
    a, b = "acct_" + uuid.uuid4().hex[:10], "acct_" + uuid.uuid4().hex[:10]
    ra, rb = await asyncio.gather(handler(tts_requested(a)), handler(tts_requested(b)))
    assert ra[0].data["cache_hit"] is False and rb[0].data["cache_hit"] is False and engine.calls == 4


async def test_the_timeline_shows_no_internal_fields(api, acct, pg):
    r = await api.post("/v1/voice/calls", headers=acct.test,
                       json={"to": "+15551234567", "from": "+15559876543", "tts": CODE})
    assert r.status_code == 201, r.text
    call_id = r.json()["id"]
    ref = "sha256:" + "ab" * 32 + ".wav"
    events = [
        ("tts.requested", {"text": CODE["text"], "voice": CODE["voice"], "speed": 1.0, "pitch": 0.0}),
        ("tts.rendered", {"audio_ref": ref, "duration_ms": 2300, "voice": CODE["voice"], "cache_hit": True}),
        ("play.requested", {"audio_ref": ref, "barge_in": True}),
        ("timer.fired", {"timer": "ring_timeout", "token": str(uuid.uuid4())}),
        ("sandbox.speech.rendered", {"audio_ref": ref, "duration_ms": 900, "cache_hit": True}),
        ("recording.captured", {"callee_ref": ref, "agent_ref": ref, "channels": "dual", "duration_ms": 10}),
        ("recording.completed", {"recording_id": "rec_1", "wav_ref": ref, "mp3_ref": ref, "duration_ms": 10,
                                 "size_bytes": 5, "sha256": "ab" * 32, "channels": "dual"}),
    ]
    for off, (type_, data) in enumerate(events):
        await pg.execute(
            "INSERT INTO projection.call_events (event_id, call_id, account_id, type, version, occurred_at,"
            " kafka_partition, kafka_offset, data) VALUES ($1, $2, $3, $4, 1, $5, 0, $6, $7)",
            uuid.uuid4(), call_id, acct.id, type_, datetime.now(timezone.utc), off, data)

    r = await api.get(f"/v1/voice/calls/{call_id}/events", headers=acct.test)
    assert r.status_code == 200
    assert "cache_hit" not in r.text and ref not in r.text and "token" not in r.text, r.text
    by_type = {e["type"]: e["data"] for e in r.json()["data"]}
    assert by_type["tts.rendered"] == {"duration_ms": 2300, "voice": CODE["voice"]}
    assert by_type["play.requested"] == {"barge_in": True}
    assert by_type["timer.fired"] == {"timer": "ring_timeout"}
    assert by_type["recording.completed"]["sha256"] == "ab" * 32  # public: it is in the webhook too
    assert by_type["tts.requested"]["text"] == CODE["text"]  # the account's own request stays visible


def test_webhook_bodies_are_built_from_the_public_view():
    internal = {f: "sha256:" + "cd" * 32 + ".wav" for f in INTERNAL_FIELDS} | {"cache_hit": True, "token": "t"}
    for type_ in WEBHOOK_TYPES:
        env = new_envelope(type_, "call_x", "acct_x", {"to": "+15551234567", "from": "+15559876543",
                                                       "recording_id": "rec_1", "text": "hi", **internal})
        body = payload(env)
        assert body is not None and not set(body) & (INTERNAL_FIELDS | {"token"}), (type_, body)
    assert public_data("timer.fired", {"timer": "x", "token": "t"}) == {"timer": "x"}
    assert public_data("call.queued", {"token": "kept: not a timer's"}) == {"token": "kept: not a timer's"}
