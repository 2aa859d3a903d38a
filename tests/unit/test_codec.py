"""The event catalog: every type round-trips, validates, and bad input is an explicit error."""

from __future__ import annotations

import json

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import events
from events import DecodeError, Envelope, decode, decode_payload, encode
from events.registry import all_types
from services.ops import schemas

TYPES = all_types()


def test_catalog_has_commands_and_events():
    names = {m.name for m in TYPES}
    assert {"PlaceCall", "HangupCall", "call.queued", "call.ringing", "call.answered", "call.completed",
            "call.busy", "call.no-answer", "call.failed", "call.canceled", "gather.completed"} <= names


@pytest.mark.parametrize("mt", TYPES, ids=lambda m: f"{m.name}.v{m.version}")
def test_example_validates_against_model_and_json_schema(mt):
    doc = schemas.schema_for(mt)
    jsonschema.Draft202012Validator.check_schema(doc)
    jsonschema.validate(mt.example, doc)
    assert not isinstance(decode_payload(Envelope(type=mt.name, call_id="c", account_id="a", data=mt.example,
                                                  version=mt.version)), DecodeError)


def test_schemas_on_disk_match_the_catalog():
    """schemas/ is generated; a model change without `canary-voice schemas export` fails here."""
    for rel, doc in schemas.documents().items():
        path = schemas.SCHEMAS / rel
        assert path.exists(), f"missing {rel}: run canary-voice schemas export"
        assert path.read_bytes() == schemas.render(doc), f"{rel} is stale: run canary-voice schemas export"


ids = st.uuids().map(str)
ts = st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)).map(
    lambda d: d.isoformat(timespec="milliseconds").replace("+00:00", "Z"))


@settings(max_examples=200, deadline=None)
@given(mt=st.sampled_from(TYPES), eid=ids, cause=st.none() | ids, call=st.text(min_size=1, max_size=30),
       acct=st.text(min_size=1, max_size=30), at=ts)
def test_round_trip_every_type(mt, eid, cause, call, acct, at):
    env = Envelope(type=mt.name, call_id=call, account_id=acct, data=dict(mt.example), version=mt.version,
                   id=eid, occurred_at=at, causation_id=cause, correlation_id=cause)
    back = decode(encode(env))
    assert back == env
    assert not isinstance(decode_payload(back), DecodeError)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_never_raise(raw):
    out = decode(raw)
    assert isinstance(out, (Envelope, DecodeError))


def _env(**over):
    base = {"id": "7d4f8e9a-1111-4222-8333-444455556666", "type": "call.ringing", "version": 1,
            "call_id": "call_1", "account_id": "acct_1", "occurred_at": "2026-01-01T00:00:00Z", "data": {}}
    base.update(over)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


@pytest.mark.parametrize("raw, code", [
    (b"garbage{", "malformed_json"),
    (None, "malformed_json"),
    (b"[1,2]", "invalid_envelope"),
    (_env(call_id=...), "invalid_envelope"),
    (_env(call_id=""), "invalid_envelope"),
    (_env(data=[1]), "invalid_envelope"),
    (_env(version=0), "invalid_envelope"),
    (_env(version=True), "invalid_envelope"),
    (_env(type="call.teleported"), "unknown_type"),
    (_env(version=7), "unknown_version"),
])
def test_bad_messages_are_explicit_errors(raw, code):
    out = decode(raw)
    assert isinstance(out, DecodeError) and out.code == code, out
    assert out.reason


def test_invalid_payload_names_the_field():
    out = events.decode_typed(_env(type="PlaceCall", data={"to": "12", "from": "+15559876543",
                                                           "tts": {"text": "hi"}}))
    assert isinstance(out, DecodeError) and out.code == "invalid_payload"
    assert any(e["field"] == "to" for e in out.errors)


def test_place_call_rules():
    from events.catalog import PlaceCallData

    ok = PlaceCallData.model_validate({"to": "+1 555 123 4567", "from": "+15559876543", "tts": {"text": "x"}})
    assert ok.to == "+15551234567"
    with pytest.raises(Exception, match="tts or audio_url"):
        PlaceCallData.model_validate({"to": "+15551234567", "from": "+15559876543"})
    with pytest.raises(Exception, match="not both"):
        PlaceCallData.model_validate({"to": "+15551234567", "from": "+15559876543", "tts": {"text": "x"},
                                      "audio_url": "https://x/y.mp3"})
    with pytest.raises(Exception):
        PlaceCallData.model_validate({"to": "+15551234567", "from": "+15559876543", "tts": {"text": "x"},
                                      "bogus": 1})


def test_derived_ids_are_deterministic():
    a = Envelope(type="call.queued", call_id="c", account_id="a", data={})
    assert a.caused("dial.requested").id == a.caused("dial.requested").id
    assert a.caused("dial.requested").id != a.caused("tts.requested").id
    assert json.loads(encode(a.caused("call.ringing")))["causation_id"] == a.id
