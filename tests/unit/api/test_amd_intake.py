"""Intake of the machine detection call options (services/lib/intake.py): what each bad value gets."""

from __future__ import annotations

import pytest

from services.lib.intake import check_place_call

BODY = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Hello"}, "carrier": "sandbox"}


def verified(account_id: str, number: str) -> bool:
    return True


async def test_the_options_are_accepted_with_their_defaults():
    model, errors = await check_place_call({**BODY, "machine_detection": "detect_message_end"}, "a", verified)
    assert errors == []
    assert (model.machine_detection, model.machine_detection_timeout, model.async_amd, model.amd_webhook_url) == (
        "detect_message_end", None, False, None)  # no timeout given: the orchestrator's 30 s
    model, errors = await check_place_call({**BODY, "machine_detection": "enable", "machine_detection_timeout": 3,
                                            "async_amd": True, "amd_webhook_url": "https://app.example/amd"},
                                           "a", verified)
    assert errors == [] and model.async_amd and model.machine_detection_timeout == 3


@pytest.mark.parametrize("extra", [{}, {"machine_detection": "enable"},
                                   {"machine_detection": "detect_message_end", "machine_detection_timeout": 10,
                                    "async_amd": True, "amd_webhook_url": "https://app.example/amd"}])
async def test_the_command_the_api_sends_passes_the_kafka_intake_again(extra):
    """The orchestrator re-checks every PlaceCall: the API's own command (defaults dumped) must pass."""
    model, errors = await check_place_call({**BODY, **extra}, "a", verified)
    assert errors == []
    command = model.model_dump(by_alias=True, exclude_none=True, mode="json")  # what services/api sends
    again, errors = await check_place_call(command, "a", verified)
    assert errors == [] and again == model


async def test_no_machine_detection_by_default():
    model, errors = await check_place_call(BODY, "a", verified)
    assert errors == [] and model.machine_detection is None


@pytest.mark.parametrize("extra,field,code", [
    # an unknown mode (Twilio spells it Enable / DetectMessageEnd: ours are lower-case words)
    ({"machine_detection": "DetectMessageEnd"}, "machine_detection", "invalid_field"),
    ({"machine_detection": True}, "machine_detection", "invalid_field"),
    # the timeout is bounded to 3..60 s and a whole number
    ({"machine_detection": "enable", "machine_detection_timeout": 2}, "machine_detection_timeout", "invalid_field"),
    ({"machine_detection": "enable", "machine_detection_timeout": 61}, "machine_detection_timeout", "invalid_field"),
    ({"machine_detection": "enable", "machine_detection_timeout": 7.5}, "machine_detection_timeout", "invalid_field"),
    ({"machine_detection": "enable", "machine_detection_timeout": "30"}, "machine_detection_timeout",
     "invalid_field"),
    # async_amd is a boolean, not a string
    ({"machine_detection": "enable", "async_amd": "true"}, "async_amd", "invalid_field"),
    # the result webhook URL is SSRF-guarded like webhook_url
    ({"machine_detection": "enable", "amd_webhook_url": "http://127.0.0.1/amd"}, "amd_webhook_url", "invalid_url"),
    ({"machine_detection": "enable", "amd_webhook_url": "file:///etc/passwd"}, "amd_webhook_url", "invalid_url"),
    ({"machine_detection": "enable", "amd_webhook_url": "https://x.example/" + "a" * 2048}, "amd_webhook_url",
     "invalid_field"),
    # the options without machine_detection are refused, not silently ignored
    ({"async_amd": True}, "async_amd", "invalid_field"),
    ({"amd_webhook_url": "https://app.example/amd"}, "amd_webhook_url", "invalid_field"),
    ({"machine_detection_timeout": 10}, "machine_detection_timeout", "invalid_field"),
])
async def test_bad_values_are_422_with_code_and_field(extra, field, code):
    model, errors = await check_place_call({**BODY, **extra}, "a", verified)
    assert model is None
    assert (errors[0]["code"], errors[0]["field"]) == (code, field), errors
