"""A command on Kafka is taken only from an authenticated producer, bound to its account.

Before, whoever could write the commands topic could place (and hang up) calls for any
account_id. With CANARY_KAFKA_INTAKE_AUTH=signed a real orchestrator takes a command only
with a `canary-signature` header: the API's own (its service key), or one made with the
intake key of the account the command names. Unsigned, forged, another account's and
stale signatures are dead-lettered as `unauthenticated_command`, and nothing is emitted
for them (no call.queued, no call.rejected in the named account's timeline).
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import time
import uuid

import httpx
import orjson
import pytest

from events import decode, encode, new_envelope
from services.common import accounts, db
from services.common.kafka import make_consumer, make_producer
from tests.api_app import new_account, running_app
from tests.conftest import service_env, spawn

pytestmark = pytest.mark.integration

BODY = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Hello"}, "carrier": "sandbox"}


async def _records(topic: str, want, timeout: float = 120.0) -> list:
    """Records of `topic` (from the start) until `want(records)` holds."""
    c = make_consumer(topic, group_id=None, auto_offset_reset="earliest")
    await c.start()
    seen: list = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not want(seen):
            assert asyncio.get_running_loop().time() < deadline, f"{topic}: {[m.value[:200] for m in seen[-5:]]}"
            for ms in (await c.getmany(timeout_ms=200)).values():
                seen.extend(ms)
        return seen
    finally:
        await c.stop()


async def _everything(topic: str) -> list:
    """Every record of `topic` up to its end offsets now."""
    from aiokafka import TopicPartition

    c = make_consumer(topic, group_id=None, auto_offset_reset="earliest")
    await c.start()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        assert parts, topic
        end = await c.end_offsets(parts)
        upto = {tp: 0 for tp in parts}
        seen: list = []
        while any(upto[tp] < end[tp] for tp in parts):
            for tp, ms in (await c.getmany(timeout_ms=200)).items():
                seen.extend(ms)
                if ms:
                    upto[tp] = ms[-1].offset + 1
        return seen
    finally:
        await c.stop()


def _dlq_calls(records: list) -> dict[str, dict]:
    """call id -> DLQ record, of the orchestrator's `unauthenticated_command` refusals."""
    out = {}
    for m in records:
        d = orjson.loads(m.value)
        if d["code"] == "unauthenticated_command" and d["consumer"] == "orchestrator":
            out[decode(base64.b64decode(d["raw_base64"])).call_id] = d
    return out


def _call(account: str, call_type: str = "PlaceCall", call_id: str | None = None, data: dict | None = None):
    cid = call_id or "call_" + uuid.uuid4().hex[:20]
    return cid, new_envelope(call_type, cid, account, data if data is not None else dict(BODY))


async def test_only_signed_commands_are_placed(prefix, monkeypatch, tmp_path):
    service_key = "svc-" + uuid.uuid4().hex + uuid.uuid4().hex
    monkeypatch.setenv("CANARY_KAFKA_SERVICE_KEY", service_key)
    acct, _, test_key, _ = await new_account("intake")
    victim, _, _, _ = await new_account("victim")
    pg = await db.connect()
    try:
        intake_key = await accounts.create_intake_key(pg, acct)
        await accounts.create_intake_key(pg, victim)  # the victim has a key too; the attacker has not got it
    finally:
        await pg.close()
    commands = prefix + "voice.call.commands"
    orch = spawn("services.orchestrator.service",
                 service_env(prefix, CANARY_KAFKA_INTAKE_AUTH="signed", CANARY_KAFKA_SERVICE_KEY=service_key),
                 tmp_path / "orchestrator.log")
    try:
        p = make_producer()
        await p.start()
        try:
            async def send(env, headers=None):
                value = encode(env)
                h = headers(value) if callable(headers) else headers
                await (await p.send(commands, value, key=env.call_id.encode(), headers=h))

            signed, env = _call(acct)
            await send(env, lambda v: accounts.sign_command(intake_key, v))
            refused = {}
            refused["unsigned"], env = _call(acct)
            await send(env)
            refused["forged"], env = _call(acct)
            await send(env, lambda v: accounts.sign_command("cik_" + "x" * 32, v))
            # the attacker's own valid key, on a command naming another account
            refused["other account"], env = _call(victim)
            await send(env, lambda v: accounts.sign_command(intake_key, v))
            refused["stale"], env = _call(acct)
            await send(env, lambda v: accounts.sign_command(intake_key, v, int(time.time()) - 3600))
            # a signature of other bytes (the envelope edited after signing)
            refused["edited"], env = _call(acct)
            other = encode(new_envelope("PlaceCall", env.call_id, acct, {**BODY, "to": "+15557654321"}))
            await send(env, accounts.sign_command(intake_key, other))
            refused["garbage header"], env = _call(acct)
            await send(env, [(accounts.INTAKE_HEADER, b"\xff\xfe")])
            refused["hangup, unsigned"], env = _call(acct, "HangupCall", call_id=signed, data={"reason": "api"})
            await send(env)
        finally:
            await p.stop()

        # the API's own commands carry its signature (the service key)
        async with running_app(prefix, monkeypatch) as app:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                         timeout=30) as http:
                r = await http.post("/v1/voice/calls", headers={"Authorization": f"Bearer {test_key}"},
                                    json={k: v for k, v in BODY.items() if k != "carrier"})
                assert r.status_code == 201, r.text
                via_api = r.json()["id"]

        events = await _records(prefix + "voice.call.events", lambda rs: {signed, via_api} <= {
            decode(m.value).call_id for m in rs if decode(m.value).type == "call.queued"})
        dlq = await _records(prefix + "voice.dlq", lambda rs: len(_dlq_calls(rs)) >= len(refused))
        why = _dlq_calls(dlq)
        assert set(why) == set(refused.values()), (why.keys(), refused)
        for label, cid in refused.items():
            assert why[cid]["source"]["topic"] == commands, label
        assert "no canary-signature header" in why[refused["unsigned"]]["reason"]
        assert "tolerance" in why[refused["stale"]]["reason"]
        assert why[refused["hangup, unsigned"]]["type"] == "HangupCall"

        # nothing was emitted for a refused command: by now the orchestrator has decided them all
        events = await _everything(prefix + "voice.call.events")
        emitted = {}
        for m in events:
            e = decode(m.value)
            emitted.setdefault(e.call_id, []).append(e.type)
        for label, cid in refused.items():
            if label != "hangup, unsigned":
                assert cid not in emitted, (label, emitted.get(cid))
        assert "hangup.requested" not in emitted[signed] and "call.canceled" not in emitted[signed]
    finally:
        os.killpg(orch.pid, signal.SIGTERM)
        orch.wait(timeout=30)


async def test_off_by_default_for_development(prefix, tmp_path):
    """Without the setting (local development) an unsigned PlaceCall is placed as before."""
    acct, _, _, _ = await new_account("intake")
    orch = spawn("services.orchestrator.service", service_env(prefix), tmp_path / "orchestrator.log")
    try:
        p = make_producer()
        await p.start()
        try:
            cid, env = _call(acct)
            await (await p.send(prefix + "voice.call.commands", encode(env), key=cid.encode()))
        finally:
            await p.stop()
        await _records(prefix + "voice.call.events", lambda rs: any(
            decode(m.value).call_id == cid and decode(m.value).type == "call.queued" for m in rs))
    finally:
        os.killpg(orch.pid, signal.SIGTERM)
        orch.wait(timeout=30)


def test_production_refuses_the_development_service_key(monkeypatch):
    from services.common.config import settings
    from services.common.signing import InsecureSecretError
    from services.orchestrator.service import _check_service_key

    monkeypatch.setenv("CANARY_ENV", "production")
    monkeypatch.setenv("CANARY_KAFKA_INTAKE_AUTH", "signed")
    monkeypatch.delenv("CANARY_KAFKA_SERVICE_KEY", raising=False)
    with pytest.raises(InsecureSecretError, match="CANARY_KAFKA_SERVICE_KEY"):
        _check_service_key(settings())
    monkeypatch.setenv("CANARY_KAFKA_SERVICE_KEY", "k" * 40)
    _check_service_key(settings())
