"""The live event streams (SSE) on the real API and call pipeline: raw HTTP, then the Python
SDK's iterators. What a stream must give: every event of the log once, in the log's order,
then `end` for a call; a resume with Last-Event-ID gives exactly what came after it."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

pytestmark = pytest.mark.interop

DEV_NUMBER = "+15559876543"
TO = "+15551234567"
TTS = {"text": "Hello from Canary!", "voice": "en-US-Neural2-F"}


def _headers(api, **extra) -> dict:
    return {"Authorization": f"Bearer {api.key}", **extra}


async def _sse(response: httpx.Response, stop: str = "end"):
    """(event, id, data) of an SSE response until `stop` (inclusive)."""
    from canary.streaming import SSEParser

    p = SSEParser()
    async for line in response.aiter_lines():
        msg = p.feed(line)
        if msg is not None:
            yield msg
            if msg[0] == stop:
                return


async def _place(c: httpx.AsyncClient, api, **body) -> str:
    r = await c.post(f"{api.url}/v1/voice/calls", headers=_headers(api),
                     json={"to": TO, "from": DEV_NUMBER, "tts": TTS, **body})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def test_a_call_stream_gives_the_whole_call_then_end_and_resumes_exactly(api):
    if not api.own_pipeline:
        pytest.skip("needs the call pipeline the fixture starts (an API found running may have none)")
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as c:
        cid = await _place(c, api, record=True)
        got = []
        async with asyncio.timeout(120):
            async with c.stream("GET", f"{api.url}/v1/voice/calls/{cid}/events", params={"follow": "true"},
                                headers=_headers(api)) as r:
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                async for event, id_, data in _sse(r):
                    got.append((event, id_, json.loads(data)))
        assert got[-1][0] == "end" and got[-1][2] == {"call_id": cid, "status": "completed"}
        log = got[:-1]
        types = [e for e, _, _ in log]
        ids = [i for _, i, _ in log]
        assert len(set(ids)) == len(ids), "an event was sent twice"
        for before, after in (("call.queued", "call.ringing"), ("call.ringing", "call.answered"),
                              ("call.answered", "call.completed"), ("recording.captured", "recording.completed")):
            assert types.index(before) < types.index(after), types
        assert all(d["call_id"] == cid and d["id"] == i and d["type"] == e for e, i, d in log)
        assert not any("audio_ref" in d["data"] or "callee_ref" in d["data"] for _, _, d in log)  # public view
        # The stored timeline says the same, event for event, once the projector (which writes
        # behind the log, and so behind the stream) has caught up.
        async with asyncio.timeout(60):
            while True:
                timeline = (await c.get(f"{api.url}/v1/voice/calls/{cid}/events",
                                        headers=_headers(api))).json()["data"]
                if len(timeline) >= len(ids):
                    break
                await asyncio.sleep(0.2)
        assert [e["id"] for e in timeline] == ids

        # Resume after the fourth event: exactly the rest, then end.
        async with c.stream("GET", f"{api.url}/v1/voice/calls/{cid}/events", params={"follow": "true"},
                            headers=_headers(api, **{"Last-Event-ID": ids[3]})) as r:
            rest = [(e, i) async for e, i, _ in _sse(r)]
        assert [i for _, i in rest[:-1]] == ids[4:] and rest[-1][0] == "end"


async def test_the_account_stream_carries_calls_placed_after_it_opened(api):
    if not api.own_pipeline:
        pytest.skip("needs the call pipeline the fixture starts")
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as c:
        async with asyncio.timeout(120):
            async with c.stream("GET", f"{api.url}/v1/voice/events", params={"follow": "true"},
                                headers=_headers(api)) as r:
                assert r.status_code == 200  # headers come once the stream is positioned on the log
                cid = await _place(c, api)
                mine = []
                async for event, id_, data in _sse(r, stop="never"):
                    d = json.loads(data)
                    if d.get("call_id") == cid:
                        mine.append(event)
                        if event == "call.completed":
                            break
        assert mine[0] == "call.queued" and "call.answered" in mine, mine


async def test_bad_stream_requests_get_clear_errors(api):
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(f"{api.url}/v1/voice/events", headers=_headers(api))  # follow missing
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_field"
        assert r.json()["error"]["field"] == "follow"
        r = await c.get(f"{api.url}/v1/voice/events", params={"follow": "true"})  # no key
        assert r.status_code == 401
        r = await c.get(f"{api.url}/v1/voice/calls/call_doesnotexist0000000/events", params={"follow": "true"},
                        headers=_headers(api))
        assert r.status_code == 404


async def test_an_account_holds_at_most_20_streams(api):
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as c:
        open_ = []
        try:
            for _ in range(20):
                cm = c.stream("GET", f"{api.url}/v1/voice/events", params={"follow": "true"}, headers=_headers(api))
                r = await cm.__aenter__()
                open_.append(cm)
                assert r.status_code == 200
            r = await c.get(f"{api.url}/v1/voice/events", params={"follow": "true"}, headers=_headers(api))
            assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_streams"
        finally:
            for cm in open_:
                await cm.__aexit__(None, None, None)


async def test_the_sdk_follows_a_call_to_its_end(api):
    if not api.own_pipeline:
        pytest.skip("needs the call pipeline the fixture starts")
    from canary import AsyncCanary

    async with AsyncCanary(api.key, base_url=api.url) as client:
        call = await client.voice.call(to=TO, from_=DEV_NUMBER, tts=TTS)
        async with asyncio.timeout(120):
            events = [ev async for ev in client.voice.calls.follow(call.id)]  # ends by itself
        types = [ev.type for ev in events]
        assert types[0] == "call.queued" and types[-1] == "call.completed", types
        again = [ev.id async for ev in client.voice.calls.follow(call.id, last_event_id=events[1].id)]
        assert again == [ev.id for ev in events[2:]]


def test_the_sync_sdk_follows_a_call_too(api, client):
    if not api.own_pipeline:
        pytest.skip("needs the call pipeline the fixture starts")
    call = client.voice.call(to=TO, from_=DEV_NUMBER, tts=TTS)
    types = [ev.type for ev in client.voice.calls.follow(call.id)]
    assert types[0] == "call.queued" and types[-1] == "call.completed", types
