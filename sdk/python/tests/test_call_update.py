"""calls.update: the body it sends for each kind of change, its key, and the errors it raises."""

from __future__ import annotations

import pytest

from canary import AsyncCanary, Canary
from canary._errors import ConflictError, InvalidRequestError

from .conftest import Reply

CALL = {"id": "call_1", "to": "+15551234567", "from": "+15559876543", "status": "in-progress",
        "direction": "outbound", "created_at": "2024-01-01T12:00:00Z"}


def accepted(*changes: str) -> Reply:
    return Reply(202, {**CALL, "update": {"id": "6f1c", "changes": list(changes)}})


@pytest.mark.parametrize("kwargs,body", [
    ({"tts": {"text": "Please hold."}}, {"tts": {"text": "Please hold."}}),
    ({"audio_url": "https://example.com/a.mp3", "interrupt": False},
     {"audio_url": "https://example.com/a.mp3", "interrupt": False}),
    ({"flow_id": "flow_1", "step": "menu"}, {"flow_id": "flow_1", "step": "menu"}),
    ({"flow": {"start": "a", "steps": {}}}, {"flow": {"start": "a", "steps": {}}}),
    ({"send_digits": "1234#"}, {"send_digits": "1234#"}),
    ({"recording": "pause"}, {"recording": "pause"}),
    ({"status": "completed"}, {"status": "completed"}),
])
def test_update_sends_only_the_given_changes(server, kwargs, body):
    server.then(accepted(*body))
    call = Canary("k", base_url=server.url).voice.calls.update("call_1", **kwargs)
    assert call.update.changes == list(body) and call.update.id == "6f1c" and call.status == "in-progress"
    req = server.requests[0]
    assert (req["method"], req["path"], req["body"]) == ("POST", "/v1/voice/calls/call_1", body)
    assert req["headers"]["idempotency-key"]  # generated: a retry is sent once


def test_update_keeps_the_given_idempotency_key_and_escapes_the_id(server):
    server.then(accepted("send_digits"))
    Canary("k", base_url=server.url).voice.calls.update("call/1", send_digits="1", idempotency_key="mine")
    assert server.requests[0]["path"] == "/v1/voice/calls/call%2F1"
    assert server.requests[0]["headers"]["idempotency-key"] == "mine"


def test_update_of_a_call_that_ended_raises_conflict(server):
    server.then(Reply(409, {"error": {"code": "call_not_live", "message": "the call is already completed",
                                      "field": "status"}}))
    with pytest.raises(ConflictError) as e:
        Canary("k", base_url=server.url, max_retries=0).voice.calls.update("call_1", send_digits="1")
    assert e.value.code == "call_not_live"


def test_a_bad_update_raises_with_its_field(server):
    server.then(Reply(422, {"error": {"code": "empty_update", "message": "an update needs at least one change",
                                      "field": None}}))
    with pytest.raises(InvalidRequestError) as e:
        Canary("k", base_url=server.url, max_retries=0).voice.calls.update("call_1")
    assert e.value.code == "empty_update"
    assert server.requests[0]["body"] == {}


async def test_async_update(server):
    server.then(accepted("recording"))
    async with AsyncCanary("k", base_url=server.url) as client:
        call = await client.voice.calls.update("call_1", recording="stop")
    assert call.update.changes == ["recording"] and server.requests[0]["body"] == {"recording": "stop"}


def test_recording_paused_spans(server):
    server.then(Reply(200, {"id": "rec_1", "call_id": "call_1", "duration": 9, "url": "/media/x",
                            "paused_spans": [{"start_ms": 2000, "end_ms": 4500}]}))
    rec = Canary("k", base_url=server.url).voice.calls.recording("call_1")
    assert [(s.start_ms, s.end_ms) for s in rec.paused_spans] == [(2000, 4500)]
