"""POST /v1/voice/calls/{id}/hangup writes one HangupCall per call, and is rate limited.

The commands topic is kept forever: before, every hangup request wrote another command
to it, without limit, so any key could grow it at will."""

from __future__ import annotations

import asyncio

import httpx

from events import Envelope, decode
from services.common.kafka import make_consumer
from tests.api_app import running_app
from tests.security.conftest import make_account

CALL = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Hello."}}


async def _commands(prefix: str) -> list[Envelope]:
    """Every command on this test's commands topic, read back with a real consumer."""
    from aiokafka import TopicPartition

    topic = prefix + "voice.call.commands"
    c = make_consumer(group_id=None)
    await c.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(2)]  # the prefix fixture makes 2 partitions
        c.assign(parts)
        await c.seek_to_beginning(*parts)
        end = await c.end_offsets(parts)
        out: list[Envelope] = []
        deadline = asyncio.get_running_loop().time() + 20
        while [tp for tp in parts if await c.position(tp) < end[tp]]:
            assert asyncio.get_running_loop().time() < deadline, "commands topic not read to its end"
            for msgs in (await c.getmany(timeout_ms=200)).values():
                out += [e for m in msgs if isinstance(e := decode(m.value), Envelope)]
        return out
    finally:
        await c.stop()


async def test_repeated_hangups_write_one_command_and_a_burst_is_limited(stack, prefix, monkeypatch):
    monkeypatch.setenv("CANARY_API_HANGUP_RATE", "1")  # a burst of 20
    acct = await make_account()
    async with running_app(prefix, monkeypatch) as app, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as c:
        r = await c.post("/v1/voice/calls", headers=acct.test, json=CALL)
        assert r.status_code == 201, r.text
        call_id = r.json()["id"]
        other = (await c.post("/v1/voice/calls", headers=acct.test, json=CALL)).json()["id"]

        first = await c.post(f"/v1/voice/calls/{call_id}/hangup", headers=acct.test)
        assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
        # repeats, some concurrent: the same answer, no new command
        rest = [await c.post(f"/v1/voice/calls/{call_id}/hangup", headers=acct.test) for _ in range(9)]
        rest += await asyncio.gather(*[c.post(f"/v1/voice/calls/{call_id}/hangup", headers=acct.test)
                                       for _ in range(8)])
        for r in rest:
            assert r.status_code == 202 and r.json() == first.json(), r.text
            assert r.headers["Idempotent-Replayed"] == "true"
        assert (await c.post(f"/v1/voice/calls/{other}/hangup", headers=acct.test)).status_code == 202
        # 19 hangups so far: the 20th passes, then the burst is spent
        codes = [(await c.post(f"/v1/voice/calls/{call_id}/hangup", headers=acct.test)).status_code
                 for _ in range(5)]
        assert codes == [202, 429, 429, 429, 429], codes
        r = await c.post(f"/v1/voice/calls/{other}/hangup", headers=acct.test)
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        assert int(r.headers["Retry-After"]) >= 1

    hangups = [e for e in await _commands(prefix) if e.type == "HangupCall"]
    assert sorted(e.call_id for e in hangups) == sorted([call_id, other]), [e.call_id for e in hangups]
