"""Event streams (SSE): the parser, and the iterators' resume on `gap` and dropped links,
against a scripted HTTP server."""

from __future__ import annotations

import json

import pytest

from canary import AsyncCanary, Canary
from canary.streaming import SSEParser

from .conftest import Reply


def sse(*events) -> bytes:
    out = [": keep-alive", ""]
    for event, id_, data in events:
        out += [f"event: {event}"] + ([f"id: {id_}"] if id_ else []) + [f"data: {json.dumps(data)}", ""]
    return ("\n".join(out) + "\n").encode()


def ev(i: int, type: str = "call.ringing") -> tuple:
    return (type, f"e{i}", {"id": f"e{i}", "type": type, "version": 1, "occurred_at": "2026-01-01T00:00:00Z",
                           "call_id": "call_1", "data": {}})


STREAM = {"Content-Type": "text/event-stream"}


def test_the_parser_joins_data_lines_and_skips_comments():
    p = SSEParser()
    out = [p.feed(x) for x in (": ping", "event: call.answered", "id: 7", "data: {\"a\":", "data: 1}", "")]
    assert out[-1] == ("call.answered", "7", "{\"a\":\n1}") and out[:-1] == [None] * 5
    assert p.feed("") is None  # an empty message is no message
    assert [p.feed("data: x"), p.feed("")][-1] == ("message", None, "x")


def test_the_sync_iterator_resumes_after_a_gap_with_last_event_id_and_stops_at_end(server):
    server.then(Reply(200, raw=sse(ev(1), ev(2), ("gap", None, {"reason": "fell_behind"})), headers=STREAM),
                Reply(200, raw=sse(ev(3, "call.completed"), ("end", None, {"status": "completed"})), headers=STREAM))
    c = Canary("sk_test_x", base_url=server.url, max_retries=2)
    assert [e.id for e in c.voice.calls.follow("call_1")] == ["e1", "e2", "e3"]
    first, second = server.requests
    assert first["path"] == "/v1/voice/calls/call_1/events?follow=true" and "last-event-id" not in first["headers"]
    assert second["headers"]["last-event-id"] == "e2" and second["headers"]["authorization"] == "Bearer sk_test_x"


async def test_the_async_iterator_rides_out_a_dropped_connection(server):
    server.then(Reply(drop=True),
                Reply(200, raw=sse(ev(1), ("end", None, {"status": "completed"})), headers=STREAM))
    async with AsyncCanary("sk_test_x", base_url=server.url, max_retries=2) as c:
        assert [e.type async for e in c.voice.calls.follow("call_1", last_event_id="e0")] == ["call.ringing"]
    assert all(r["headers"]["last-event-id"] == "e0" for r in server.requests)


def test_an_error_status_raises_the_typed_error(server):
    from canary import NotFoundError

    server.then(Reply(404, {"error": {"code": "call_not_found", "message": "no such call", "field": "call_id"}}))
    with pytest.raises(NotFoundError) as err:
        list(Canary("sk_test_x", base_url=server.url).voice.calls.follow("call_9"))
    assert err.value.code == "call_not_found"
