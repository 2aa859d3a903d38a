"""Server-Sent Events: a call's events as they happen (`GET /v1/voice/calls/{id}/events?follow=true`)
and the whole account's (`GET /v1/voice/events?follow=true`).

Each SSE message is one event of the log, in the public view of the call timeline:
`id:` the event id, `event:` its type, `data:` `{"id", "type", "version", "occurred_at",
"trace_id", "call_id", "data"}`. A reconnecting client sends `Last-Event-ID` and gets what came after
it. Besides the log's events a stream may send `end` (a call's stream: the call ended
and its recording and transcript are in; then it closes) and `gap` (the client fell
behind or Kafka could not be read: events may be missing; reconnect with Last-Event-ID).
A comment line every 15 s keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, AsyncIterator, Iterable

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response

from events import Envelope, trace
from events.catalog import TERMINAL_EVENTS
from events.public import public_data
from services.api import models, store
from services.api.auth import current_account
from services.api.errors import ApiError, unavailable
from services.api.live_events import EventHub, Follower, call_stream_done
from services.common.accounts import Account, iso

router = APIRouter(tags=["calls"])

PING_S = 15
HISTORY_LIMIT = 5000


def _item(event_id: str, type: str, version: int, occurred_at: str, trace_id: str, call_id: str,
          data: Any) -> dict[str, Any]:
    return {"id": event_id, "type": type, "version": version, "occurred_at": occurred_at, "trace_id": trace_id,
            "call_id": call_id, "data": public_data(type, data)}


def _from_env(env: Envelope) -> dict[str, Any]:
    # The live event and its row in the timeline show the same trace id (store.event_trace_id).
    return _item(env.id, env.type, env.version, env.occurred_at,
                 trace.trace_id_of(env.traceparent, env.correlation_id or env.id), env.call_id, env.data)


def _from_row(r: Any, call_id: str) -> dict[str, Any]:
    return _item(str(r["event_id"]), r["type"], r["version"], iso(r["occurred_at"]), store.event_trace_id(r),
                 call_id, r["data"])


def _sse(item: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=orjson.dumps(item).decode(), event=item["type"], id=item["id"])


def _after(items: list[dict[str, Any]], last_id: str | None) -> list[dict[str, Any]]:
    """What comes after `last_id`; all of it if `last_id` is not among them."""
    if last_id:
        for i, it in enumerate(items):
            if it["id"] == last_id:
                return items[i + 1:]
    return items


async def _follow(request: Request, account: Account, call_id: str | None) -> tuple[EventHub, Follower]:
    hub: EventHub = request.app.state.runtime.live
    if hub.count(account.id) >= hub.per_account:
        raise ApiError(429, "too_many_streams", f"at most {hub.per_account} open event streams per account",
                       headers={"Retry-After": "5"})
    if len(hub.followers) >= hub.max_followers:
        raise unavailable("event streams")
    try:
        return hub, await hub.follow(account.id, call_id)
    except (TimeoutError, asyncio.TimeoutError):
        raise unavailable("kafka") from None


async def follow_call(request: Request, account: Account, call_id: str, last_event_id: str | None) -> Response:
    """The SSE stream of one call (its timeline so far after Last-Event-ID, then live, then `end`)."""
    hub, f = await _follow(request, account, call_id)
    try:
        rows = await (await request.app.state.runtime.db()).fetch(store.GET_EVENTS, call_id, account.id,
                                                                  HISTORY_LIMIT)
    except BaseException:
        hub.leave(f)
        raise
    # The projected timeline, then what the projector may not have written yet.
    history = [_from_row(r, call_id) for r in rows]
    known = {it["id"] for it in history}
    history += [it for it in map(_from_env, hub.recent(f)) if it["id"] not in known]

    async def events() -> AsyncIterator[ServerSentEvent]:
        seen: dict[str, dict] = {}
        sent: set[str] = set()

        def note(items: Iterable[dict[str, Any]]) -> None:
            for it in items:
                seen[it["type"]] = it["data"] if isinstance(it["data"], dict) else {}

        try:
            note(history)  # what happened before the resume point counts for the end
            for it in _after(history, last_event_id):
                sent.add(it["id"])
                yield _sse(it)
            sent.update(it["id"] for it in history)
            while not call_stream_done(seen):
                env = await f.queue.get()
                if env is None or f.overflowed:
                    yield ServerSentEvent(data=orjson.dumps({"call_id": call_id, "reason": "fell_behind"}).decode(),
                                          event="gap")
                    return
                if env.id in sent:
                    continue
                sent.add(env.id)
                it = _from_env(env)
                note([it])
                yield _sse(it)
            status = next((TERMINAL_EVENTS[t] for t in seen if t in TERMINAL_EVENTS), "failed")  # or rejected
            yield ServerSentEvent(data=orjson.dumps({"call_id": call_id, "status": status}).decode(), event="end")
        finally:
            hub.leave(f)

    return EventSourceResponse(events(), ping=PING_S)


async def follow_account(request: Request, account: Account, last_event_id: str | None) -> Response:
    """The SSE stream of every call of the account, live (a resume is served from the
    hub's recent window; past it, a `gap` says so first)."""
    hub, f = await _follow(request, account, None)
    backlog: list[dict[str, Any]] = []
    gap = False
    if last_event_id:
        recent = [_from_env(e) for e in hub.recent(f)]
        backlog = _after(recent, last_event_id)
        gap = len(backlog) == len(recent)  # the resume point is not held any more
        if gap:
            backlog = []

    async def events() -> AsyncIterator[ServerSentEvent]:
        sent: set[str] = set()
        try:
            if gap:
                yield ServerSentEvent(data=orjson.dumps({"reason": "resume_point_not_held"}).decode(), event="gap")
            for it in backlog:
                sent.add(it["id"])
                yield _sse(it)
            while True:
                env = await f.queue.get()
                if env is None or f.overflowed:
                    yield ServerSentEvent(data=orjson.dumps({"reason": "fell_behind"}).decode(), event="gap")
                    return
                if env.id not in sent:
                    yield _sse(_from_env(env))
                if len(sent) > 10_000:
                    sent.clear()  # only the backlog's ids can repeat, right after it
        finally:
            hub.leave(f)

    return EventSourceResponse(events(), ping=PING_S)


@router.get("/v1/voice/events", response_model=None, summary="The account's events, live (Server-Sent Events)",
            responses={200: {"description": "text/event-stream: every event of the account's calls as it happens",
                             "content": {"text/event-stream": {}}}, **models.errors(401, 422, 429, 503)})
async def account_events(request: Request, account: Annotated[Account, Depends(current_account)],
                         follow: Annotated[bool, Query(description="must be true: the account's events are a stream")]
                         = False,
                         last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None) -> Response:
    if not follow:
        raise ApiError(422, "invalid_field", "the account's events are a live stream: pass follow=true "
                       "(a call's stored timeline is GET /v1/voice/calls/{id}/events)", "follow")
    return await follow_account(request, account, last_event_id)
