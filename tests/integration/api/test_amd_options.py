"""POST /v1/voice/calls with the machine detection options, on the real stack (API in process)."""

from __future__ import annotations

import pytest

from events import decode_typed
from services.lib.intake import check_place_call
from tests.integration.api.conftest import DOCS_BODY
from tests.integration.api.helpers import read_topic

pytestmark = pytest.mark.integration


async def test_the_options_reach_the_command_and_pass_the_kafka_intake(client, acct, prefix):
    r = await client.post("/v1/voice/calls", headers=acct.headers, json={
        **DOCS_BODY, "machine_detection": "detect_message_end", "machine_detection_timeout": 12, "async_amd": True,
        "amd_webhook_url": "https://app.example/amd"})
    assert r.status_code == 201, r.text
    [rec] = await read_topic(prefix + "voice.call.commands", 1)
    env, _ = decode_typed(rec.value)
    assert {k: env.data[k] for k in ("machine_detection", "machine_detection_timeout", "async_amd",
                                     "amd_webhook_url")} == {
        "machine_detection": "detect_message_end", "machine_detection_timeout": 12, "async_amd": True,
        "amd_webhook_url": "https://app.example/amd"}
    ok, errors = await check_place_call(env.data, acct.id, lambda a, n: True)  # what the orchestrator re-checks
    assert ok is not None and errors == []


@pytest.mark.parametrize("extra,code,field", [
    ({"machine_detection": "maybe"}, "invalid_field", "machine_detection"),
    ({"machine_detection": "enable", "machine_detection_timeout": 600}, "invalid_field", "machine_detection_timeout"),
    ({"machine_detection": "enable", "amd_webhook_url": "http://169.254.169.254/latest"}, "invalid_url",
     "amd_webhook_url"),
    ({"async_amd": True}, "invalid_field", "async_amd"),
])
async def test_bad_options_are_422_with_code_and_field_and_nothing_is_sent(client, acct, prefix, extra, code, field):
    r = await client.post("/v1/voice/calls", headers=acct.headers, json={**DOCS_BODY, **extra})
    assert r.status_code == 422, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["field"]) == (code, field)
    assert await read_topic(prefix + "voice.call.commands", 1, timeout=1.0) == []
