"""A PlaceCall produced by an external tool (kcat) is a well-formed command that the
shared intake validation accepts; a bad one gets machine-readable reasons."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import orjson
import pytest

from events import decode, decode_typed
from services.common.accounts import VerifiedNumbers
from services.common.config import settings
from services.lib.intake import check_place_call
from tests.integration.api.conftest import DOCS_BODY
from tests.integration.api.helpers import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.interop]


def kcat_produce(topic: str, key: str, value: bytes) -> None:
    subprocess.run(["kcat", "-b", settings().kafka_bootstrap, "-P", "-t", topic, "-k", key],
                   input=value + b"\n", check=True, timeout=30)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed")
async def test_kcat_place_call(prefix, acct, pg):
    topic = prefix + "voice.call.commands"
    good_id, bad_id = "call_" + uuid.uuid4().hex[:20], "call_" + uuid.uuid4().hex[:20]
    env = {"id": str(uuid.uuid4()), "type": "PlaceCall", "version": 1, "call_id": good_id, "account_id": acct.id,
           "occurred_at": "2024-01-01T12:00:00Z", "data": {**DOCS_BODY, "carrier": "sandbox"}}
    bad = {**env, "id": str(uuid.uuid4()), "call_id": bad_id,
           "data": {"to": "12", "from": "+15550000000", "tts": {"text": "x", "voice": "nope"}}}
    kcat_produce(topic, good_id, orjson.dumps(env))
    kcat_produce(topic, bad_id, orjson.dumps(bad))
    recs = {r.key.decode(): r for r in await read_topic(topic, 2)}
    lookup = VerifiedNumbers(pg)

    decoded = decode_typed(recs[good_id].value)
    assert decoded, decoded
    e, _ = decoded
    assert e.type == "PlaceCall" and e.call_id == good_id
    model, errors = await check_place_call(e.data, e.account_id, lookup)
    assert errors == [] and model.to == "+15551234567"

    assert not decode_typed(recs[bad_id].value)  # the codec alone already refuses it ...
    env_only = decode(recs[bad_id].value)  # ... and the intake says precisely why
    assert env_only, env_only
    model, errors = await check_place_call(env_only.data, acct.id, lookup)
    assert model is None
    assert {(x["code"], x["field"]) for x in errors} >= {("invalid_phone_number", "to"),
                                                         ("invalid_voice", "tts.voice")}
    assert all(set(x) == {"code", "field", "message"} for x in errors)
