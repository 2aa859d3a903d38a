"""Caller ids of live calls are verified by a call, not by declaration.

Before, `POST /v1/voice/numbers` with any key made any E.164 number a verified caller id
at once, so a live key could show someone else's number on a real trunk. Now a sk_live_
key's number gets a verification call, a real call through the real services
(orchestrator, gateway, TTS worker: a PlaceCall with tts of the code, placed by the
deployment's own account, here on the sandbox carrier), and only the code that call spoke
makes it usable as `from`; five wrong codes void the call. A sk_test_ key keeps its
shortcut, for sandbox calls only: its numbers are not a live call's caller id, at the API
nor at the orchestrator's Kafka intake.
"""

from __future__ import annotations

import re
import uuid

import httpx
import orjson
import pytest

from events import decode, new_envelope
from services.common import db
from services.common.kafka import make_consumer, make_producer, publish
from tests.api_app import new_account, running_app
from tests.e2e.conftest import _voice_stack

pytestmark = pytest.mark.integration

MODULES = ["services.orchestrator.service", "services.telephony.gateway", "services.tts.worker",
           "services.projector.service"]
SYSTEM_FROM = "+15559876543"  # the stack's account's verified number: the deployment's caller id
BODY = {"to": "+15551234567", "tts": {"text": "Hello"}}


@pytest.fixture(scope="module")
async def voice(request, stack, tmp_path_factory):
    async for vs in _voice_stack(request, stack, tmp_path_factory, MODULES):
        yield vs


@pytest.fixture
async def http(voice, monkeypatch):
    """The API in-process on the stack's topics; the stack's account places verification calls."""
    monkeypatch.setenv("CANARY_CALLER_ID_ACCOUNT", voice.account)
    monkeypatch.setenv("CANARY_CALLER_ID_FROM", SYSTEM_FROM)
    monkeypatch.setenv("CANARY_CALLER_ID_CARRIER", "sandbox")
    monkeypatch.setenv("CANARY_CALLER_ID_COOLDOWN", "0")
    async with running_app(voice.prefix, monkeypatch) as app:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                     timeout=60) as client:
            yield client


def new_number() -> str:
    return "+1555" + str(uuid.uuid4().int)[:7]


async def verification_call(voice, number: str, seen: set[str], timeout: float = 120.0) -> str:
    """The id of the newest verification call to `number` on the commands topic (not in `seen`)."""
    import asyncio

    c = make_consumer(voice.prefix + "voice.call.commands", group_id=None, auto_offset_reset="earliest")
    await c.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for ms in (await c.getmany(timeout_ms=200)).values():
                for m in ms:
                    env = decode(m.value)
                    if env.type == "PlaceCall" and env.data.get("to") == number and env.call_id not in seen:
                        assert env.account_id == voice.account and env.data["from"] == SYSTEM_FROM
                        assert env.data["carrier"] == "sandbox"
                        seen.add(env.call_id)
                        return env.call_id
            assert asyncio.get_running_loop().time() < deadline, f"no verification call to {number}"
    finally:
        await c.stop()


async def spoken_code(voice, call_id: str) -> str:
    """The code, as the call said it: the text the TTS worker rendered, then played to the callee."""
    asked = await voice.wait(call_id, "tts.requested", timeout=120)
    await voice.wait(call_id, "tts.rendered", timeout=120)
    await voice.wait(call_id, "prompt.finished", timeout=120)
    end = await voice.wait(call_id, "terminal", timeout=120)
    assert end.type == "call.completed", voice.types(call_id)
    digits = re.findall(r"\d", asked.data["text"])
    assert len(digits) == 12 and digits[:6] == digits[6:], asked.data["text"]  # said twice
    return "".join(digits[:6])


def other_than(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** 6:06d}"


async def test_a_live_number_becomes_usable_with_the_code_its_call_spoke(voice, http):
    acct, _, test_key, live_key = await new_account("cid", number=None)
    live = {"Authorization": f"Bearer {live_key}"}
    number = new_number()
    r = await http.post("/v1/voice/numbers", headers=live, json={"number": number})
    assert r.status_code == 201, r.text
    assert r.json()["number"] == number and r.json()["verification"] == "pending"
    # Never the code the verification call speaks: only the number's own fields (its
    # inbound routes, unset yet, among them).
    assert set(r.json()) == {"number", "created_at", "verification", "voice_url", "flow_id", "webhook_url"}
    assert (r.json()["voice_url"], r.json()["flow_id"], r.json()["webhook_url"]) == (None, None, None)
    listed = (await http.get("/v1/voice/numbers", headers=live)).json()["data"]
    assert [(n["number"], n["verification"]) for n in listed] == [(number, "pending")]

    # not usable until verified: the live key cannot show it
    r = await http.post("/v1/voice/calls", headers=live, json={**BODY, "from": number})
    assert r.status_code == 403 and r.json()["error"]["code"] == "number_not_verified", r.text

    call_id = await verification_call(voice, number, set())
    code = await spoken_code(voice, call_id)
    # the customer cannot read the verification call (it is the deployment's)
    assert (await http.get(f"/v1/voice/calls/{call_id}", headers=live)).status_code == 404
    assert (await http.get(f"/v1/voice/calls/{call_id}/events", headers=live)).status_code == 404
    pg = await db.connect()
    try:
        stored = await pg.fetchrow("SELECT * FROM caller_id_verifications WHERE account_id = $1", acct)
        assert code.encode() not in bytes(stored["code_hash"]) and code not in str(dict(stored))
    finally:
        await pg.close()

    r = await http.post(f"/v1/voice/numbers/{number}/verify", headers=live, json={"code": other_than(code)})
    assert r.status_code == 422 and r.json()["error"]["code"] == "verification_code_invalid", r.text
    r = await http.post(f"/v1/voice/numbers/{number}/verify", headers=live, json={"code": code})
    assert r.status_code == 200, r.text
    assert r.json()["number"] == number and r.json()["verification"] == "verified"
    listed = (await http.get("/v1/voice/numbers", headers=live)).json()["data"]
    assert [(n["number"], n["verification"]) for n in listed] == [(number, "verified")]
    r = await http.post("/v1/voice/calls", headers=live, json={**BODY, "from": number})
    assert r.status_code == 201, r.text
    # a used code is gone; the number cannot be re-verified
    r = await http.post(f"/v1/voice/numbers/{number}/verify", headers=live, json={"code": code})
    assert r.status_code == 409 and r.json()["error"]["code"] == "number_exists"
    assert (await http.post("/v1/voice/numbers", headers=live, json={"number": number})).status_code == 409


async def test_five_wrong_codes_void_the_call_and_an_expired_code_is_refused(voice, http):
    acct, _, _, live_key = await new_account("cid", number=None)
    live = {"Authorization": f"Bearer {live_key}"}
    number, seen = new_number(), set()
    assert (await http.post("/v1/voice/numbers", headers=live, json={"number": number})).status_code == 201
    code = await spoken_code(voice, await verification_call(voice, number, seen))
    for i in range(5):
        r = await http.post(f"/v1/voice/numbers/{number}/verify", headers=live,
                            json={"code": other_than(code) if i % 2 else "12345x"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "verification_code_invalid", r.text
    r = await http.post(f"/v1/voice/numbers/{number}/verify", headers=live, json={"code": code})
    assert r.status_code == 403 and r.json()["error"]["code"] == "too_many_attempts", r.text
    r = await http.post("/v1/voice/calls", headers=live, json={**BODY, "from": number})
    assert r.status_code == 403 and r.json()["error"]["code"] == "number_not_verified"

    # a new call, a new code; the old one is void
    assert (await http.post("/v1/voice/numbers", headers=live, json={"number": number})).status_code == 201
    fresh = await spoken_code(voice, await verification_call(voice, number, seen))
    if fresh != code:
        r = await http.post(f"/v1/voice/numbers/{number}/verify", headers=live, json={"code": code})
        assert r.json()["error"]["code"] == "verification_code_invalid"
    # ten minutes later the code has expired (the clock moved in the row)
    pg = await db.connect()
    try:
        await pg.execute("UPDATE caller_id_verifications SET expires_at = now() - interval '1 second'"
                         " WHERE account_id = $1", acct)
    finally:
        await pg.close()
    r = await http.post(f"/v1/voice/numbers/{number}/verify", headers=live, json={"code": fresh})
    assert r.status_code == 410 and r.json()["error"]["code"] == "verification_expired", r.text
    r = await http.post("/v1/voice/calls", headers=live, json={**BODY, "from": number})
    assert r.status_code == 403


async def test_a_test_keys_number_is_verified_at_once_for_sandbox_calls_only(voice, http):
    acct, _, test_key, live_key = await new_account("cid", number=None)
    test, live = {"Authorization": f"Bearer {test_key}"}, {"Authorization": f"Bearer {live_key}"}
    number = new_number()
    r = await http.post("/v1/voice/numbers", headers=test, json={"number": number})
    assert r.status_code == 201 and r.json()["verification"] == "verified", r.text
    assert (await http.post("/v1/voice/calls", headers=test, json={**BODY, "from": number})).status_code == 201
    r = await http.post("/v1/voice/calls", headers=live, json={**BODY, "from": number})
    assert r.status_code == 403 and r.json()["error"]["code"] == "number_not_verified", r.text
    listed = (await http.get("/v1/voice/numbers", headers=live)).json()["data"]
    assert [(n["number"], n["verification"]) for n in listed] == [(number, "pending")]

    # a live PlaceCall produced straight to Kafka is refused by the orchestrator's intake too
    p = make_producer()
    await p.start()
    try:
        call_id = "call_" + uuid.uuid4().hex[:20]
        await publish(p, voice.prefix + "voice.call.commands", new_envelope(
            "PlaceCall", call_id, acct, {**BODY, "from": number, "carrier": "sip"}))
        sandbox_id = "call_" + uuid.uuid4().hex[:20]
        await publish(p, voice.prefix + "voice.call.commands", new_envelope(
            "PlaceCall", sandbox_id, acct, {**BODY, "from": number, "carrier": "sandbox"}))
    finally:
        await p.stop()
    rejected = await voice.wait(call_id, "call.rejected", timeout=120)
    assert "number_not_verified" in orjson.dumps(rejected.data).decode()
    assert "dial.requested" not in voice.types(call_id)
    await voice.wait(sandbox_id, "dial.requested", timeout=120)
