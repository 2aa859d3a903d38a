"""Webhook bodies: exact docs payload, and every body valid against schemas/webhooks."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from events import REGISTRY, Envelope
from services.webhooks.payloads import WEBHOOK_TYPES, Routes, body_bytes, payload

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas" / "webhooks"


def schema_file(event_type: str) -> Path:
    return SCHEMAS / ("call.status.json" if event_type.startswith("call.") else f"{event_type}.json")


def validator(event_type: str) -> Draft202012Validator:
    doc = json.loads(schema_file(event_type).read_text())
    return Draft202012Validator(doc, format_checker=FormatChecker())


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.json")), ids=lambda p: p.name)
def test_schema_is_valid_and_examples_validate(path):
    doc = json.loads(path.read_text())
    Draft202012Validator.check_schema(doc)
    v = Draft202012Validator(doc, format_checker=FormatChecker())
    assert doc["examples"]
    for ex in doc["examples"]:
        v.validate(ex)


def test_every_webhook_type_has_a_schema():
    for t in WEBHOOK_TYPES:
        assert schema_file(t).exists(), t


@pytest.mark.parametrize("event_type", WEBHOOK_TYPES)
def test_payload_of_the_catalog_example_validates(event_type):
    mt = REGISTRY[event_type][max(REGISTRY[event_type])]
    env = Envelope(type=event_type, call_id="call_abc123xyz", account_id="acct_1", data=mt.example)
    body = payload(env)
    assert body is not None and body["call_id"] == "call_abc123xyz" and body["type"] == event_type
    validator(event_type).validate(body)
    assert orjson.loads(body_bytes(body)) == body


def test_gather_payload_is_exactly_the_documented_one_plus_extras():
    env = Envelope(type="gather.completed", call_id="call_abc123xyz", account_id="a",
                   data={"digits": "1234", "finished_on_key": "#"})
    body = payload(env)
    docs = {"call_id": "call_abc123xyz", "type": "gather.completed", "digits": "1234", "finished_on_key": "#"}
    assert list(body)[:4] == list(docs)
    assert {k: body[k] for k in docs} == docs
    assert set(body) - set(docs) == {"event_id", "occurred_at"}
    assert body_bytes(body).startswith(
        b'{"call_id":"call_abc123xyz","type":"gather.completed","digits":"1234","finished_on_key":"#"')


def test_gather_ended_on_num_digits_has_null_finished_on_key_and_speech_when_given():
    env = Envelope(type="gather.completed", call_id="c", account_id="a",
                   data={"digits": "", "speech": {"text": "billing", "confidence": 0.9}, "step": "main"})
    body = payload(env)
    assert body["finished_on_key"] is None and body["speech"]["text"] == "billing" and body["step"] == "main"
    validator("gather.completed").validate(body)


@pytest.mark.parametrize("event_type,status", [("call.queued", "queued"), ("call.ringing", "ringing"),
                                               ("call.answered", "in-progress"), ("call.no-answer", "no-answer"),
                                               ("call.canceled", "canceled")])
def test_status_mapping(event_type, status):
    data = {"to": "+15551234567", "from": "+15559876543", "created_at": "2024-01-01T00:00:00Z"} \
        if event_type == "call.queued" else {}
    assert payload(Envelope(type=event_type, call_id="c", account_id="a", data=data))["status"] == status


def test_internal_events_are_not_webhooks():
    for t in ("tts.requested", "dtmf.received", "flow.step.entered", "play.requested"):
        assert payload(Envelope(type=t, call_id="c", account_id="a", data={})) is None


def test_routes_from_call_request():
    r = Routes.from_queued({"webhook_url": "https://a.example/status",
                            "gather": {"type": "dtmf", "webhook_url": "https://a.example/dtmf"}})
    assert r.url_for("call.ringing") == "https://a.example/status"
    assert r.url_for("gather.completed") == "https://a.example/dtmf"
    assert r.url_for("gather.timeout") == "https://a.example/dtmf"
    assert r.url_for("tts.rendered") is None
    only_status = Routes.from_queued({"webhook_url": "https://a.example/status"})
    assert only_status.url_for("gather.completed") == "https://a.example/status"
    assert Routes.from_queued({}).url_for("call.completed") is None


def test_live_transcripts_go_where_asked_and_nowhere_otherwise():
    to_own = Routes.from_queued({"webhook_url": "https://a.example/status", "transcribe": True,
                                 "transcribe_webhook_url": "https://a.example/live"})
    assert to_own.url_for("transcription.partial") == "https://a.example/live"
    assert to_own.url_for("transcription.completed") == "https://a.example/live"
    assert to_own.url_for("call.completed") == "https://a.example/status"
    to_status = Routes.from_queued({"webhook_url": "https://a.example/status", "transcribe_webhooks": True})
    assert to_status.url_for("transcription.partial") == "https://a.example/status"
    not_asked = Routes.from_queued({"webhook_url": "https://a.example/status", "transcribe": True})
    assert not_asked.url_for("transcription.partial") is None  # partials are many: only when asked
    assert not_asked.url_for("transcription.completed") == "https://a.example/status"  # as before


def test_a_partial_names_its_utterance_so_the_next_replaces_it():
    env = Envelope(type="transcription.partial", call_id="call_1", account_id="a",
                   data={"text": "I would like", "offset_ms": 1200, "channel": "callee", "final": False,
                         "utterance": 2, "duration_ms": 800})
    body = payload(env)
    assert {k: body[k] for k in ("utterance_id", "utterance", "text", "final", "offset_ms")} == {
        "utterance_id": "callee-2", "utterance": 2, "text": "I would like", "final": False, "offset_ms": 1200}
    validator("transcription.partial").validate(body)


def test_machine_detection_goes_to_amd_webhook_url_else_webhook_url():
    both = Routes.from_queued({"webhook_url": "https://app.example/status", "amd_webhook_url": "https://app.example/amd"})
    assert both.url_for("machine_detection.completed") == "https://app.example/amd"
    assert both.url_for("call.answered") == "https://app.example/status"  # only the result goes there
    status_only = Routes.from_queued({"webhook_url": "https://app.example/status"})
    assert status_only.url_for("machine_detection.completed") == "https://app.example/status"
    assert Routes.from_queued({}).url_for("machine_detection.completed") is None


def test_machine_detection_body():
    env = Envelope(type="machine_detection.completed", call_id="call_abc123xyz", account_id="a",
                   data={"answered_by": "human", "mode": "enable", "decision_ms": 1840, "beep_ms": None})
    body = payload(env)
    assert {k: body[k] for k in ("call_id", "type", "answered_by", "mode", "decision_ms")} == {
        "call_id": "call_abc123xyz", "type": "machine_detection.completed", "answered_by": "human", "mode": "enable",
        "decision_ms": 1840}
    assert "beep_ms" not in body  # no beep: left out, not null
    validator("machine_detection.completed").validate(body)
