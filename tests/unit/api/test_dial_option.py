"""The `dial` call option (click-to-call): what each bad value gets at intake
(services/lib/intake.py, the API's and the Kafka intake's check alike), and the flow it runs
(services/lib/flows/call_options.py)."""

from __future__ import annotations

import pytest

from services.lib.flows.call_options import dial_flow
from services.lib.flows.validate import validate_flow
from services.lib.intake import check_place_call

BODY = {"to": "+15551234567", "from": "+15559876543", "carrier": "sandbox"}
VERIFIED = {"+15559876543", "+15550001111"}


def verified(account_id: str, number: str) -> bool:
    return number in VERIFIED


async def test_a_dial_option_needs_no_prompt_and_passes_the_kafka_intake_again():
    model, errors = await check_place_call({**BODY, "dial": {"to": "+15557770010"}}, "a", verified)
    assert errors == [] and model.dial.to == "+15557770010" and model.dial.timeout == 30
    command = model.model_dump(by_alias=True, exclude_none=True, mode="json")  # what services/api sends
    again, errors = await check_place_call(command, "a", verified)
    assert errors == [] and again == model


@pytest.mark.parametrize("extra, code, field", [
    ({"dial": {"to": "12"}}, "invalid_field", "dial.to"),  # neither E.164 nor a SIP URI
    ({"dial": {"to": "+1999"}}, "invalid_field", "dial.to"),  # E.164-shaped, not a possible number
    ({"dial": {}}, "missing_field", "dial.to"),
    ({"dial": {"to": "+15557770010", "timeout": 0}}, "invalid_field", "dial.timeout"),
    ({"dial": {"to": "+15557770010", "timeout": 601}}, "invalid_field", "dial.timeout"),
    ({"dial": {"to": "+15557770010", "caller_id": "+1555"}}, "invalid_field", "dial.caller_id"),
    ({"dial": {"to": "+15557770010", "ring": 3}}, "unknown_field", "dial.ring"),
    ({"dial": {"to": "+15557770010"}, "flow": {"start": "a", "steps": {"a": {"kind": "hangup"}}}},
     "conflicting_fields", "dial"),
    ({"dial": {"to": "+15557770010"}, "flow_id": "flow_x"}, "conflicting_fields", "dial"),
    # a caller id the second party would see must be the account's, as the call's own from
    ({"dial": {"to": "+15557770010", "caller_id": "+15552223333"}}, "number_not_verified", "dial.caller_id"),
])
async def test_each_bad_dial_option_is_refused_with_its_field(extra, code, field):
    model, errors = await check_place_call({**BODY, **extra}, "a", verified)
    assert model is None
    assert (errors[0]["code"], errors[0]["field"]) == (code, field), errors


def test_the_flow_greets_then_dials_and_is_a_valid_flow():
    plain = dial_flow({"dial": {"to": "sip:agent@pbx.example", "timeout": 20, "record": True}})
    assert plain == {"name": "dial option", "start": "dial", "steps": {
        "dial": {"kind": "dial", "to": "sip:agent@pbx.example", "timeout": 20, "record": True}}}
    said = dial_flow({"tts": {"text": "Connecting you.", "voice": "en-US-Neural2-F", "speed": 1.0},
                      "dial": {"to": "+15557770010", "caller_id": "+15550001111"}})
    assert said["start"] == "greeting"
    assert said["steps"]["greeting"] == {"kind": "say", "text": "Connecting you.", "next": "dial",
                                         "voice": "en-US-Neural2-F"}
    assert said["steps"]["dial"] == {"kind": "dial", "to": "+15557770010", "caller_id": "+15550001111"}
    played = dial_flow({"audio_url": "https://cdn.example/hold.mp3", "dial": {"to": "+15557770010"}})
    assert played["steps"]["greeting"] == {"kind": "play", "url": "https://cdn.example/hold.mp3", "next": "dial"}
    for f in (plain, said, played):
        assert validate_flow(f) == []
