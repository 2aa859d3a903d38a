"""POST /v1/voice/calls with the `dial` option (click-to-call): accepted as a PlaceCall on Kafka,
or a 4xx naming the offending field."""

from __future__ import annotations

from tests.integration.api.conftest import DOCS_BODY


async def test_a_dial_option_is_accepted_without_a_prompt(client, acct):
    body = {k: v for k, v in DOCS_BODY.items() if k != "tts"}
    r = await client.post("/v1/voice/calls", headers=acct.headers,
                          json={**body, "dial": {"to": "sip:desk@pbx.example", "timeout": 15}})
    assert r.status_code == 201, r.text


async def test_bad_dial_options_name_their_field(client, acct):
    for extra, status, code, field in [
        ({"dial": {"to": "desk"}}, 422, "invalid_field", "dial.to"),
        ({"dial": {"to": "+15557770010", "caller_id": "+15552223333"}}, 403, "number_not_verified", "dial.caller_id"),
        ({"dial": {"to": "+15557770010"}, "flow_id": "flow_x"}, 422, "conflicting_fields", "dial"),
    ]:
        r = await client.post("/v1/voice/calls", headers=acct.headers, json={**DOCS_BODY, **extra})
        assert r.status_code == status, r.text
        err = r.json()["error"]
        assert (err["code"], err["field"]) == (code, field), err
