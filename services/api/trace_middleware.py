"""The trace of each API request (W3C Trace Context), as a plain ASGI wrapper.

A request's `traceparent` header is continued when it is valid, with its `tracestate` when
that is valid too (passed on unchanged: we add no entry); an invalid or missing traceparent
starts a new trace without tracestate, an invalid tracestate is dropped (never an error). The request gets a span id of its own: it is the parent
of every command the request produces (``Runtime.publish`` stamps the envelope with
:func:`current`), it is returned in the response's `traceparent` header (and the tracestate kept, if any, in
`tracestate`), the request's log
lines carry its trace id, and with span export on it is the `api request` span.
"""

from __future__ import annotations

import contextvars
from typing import Any, Awaitable, Callable

import structlog

from events import trace
from events.trace import TraceContext
from services.common import tracing

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

_current: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar("canary_api_trace", default=None)


def current() -> TraceContext | None:
    """The trace context of the request being handled (None outside a request)."""
    return _current.get()


def incoming(scope: Scope) -> TraceContext | None:
    """The request's valid `traceparent`, if any (a repeated header is invalid, as the spec says),
    with its valid `tracestate` (repeated headers are one list, as the spec says)."""
    headers = scope.get("headers") or ()
    found = [v for k, v in headers if k == b"traceparent"]
    ctx = trace.parse(found[0]) if len(found) == 1 else None
    if ctx is None:
        return None  # the spec: no tracestate is read without a valid traceparent
    states = [v for k, v in headers if k == b"tracestate"]
    return ctx.with_state(states) if states else ctx


class RequestTrace:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        parent = incoming(scope)
        ctx = parent.child(trace.random_span_id()) if parent is not None else trace.new_trace()
        added = [(b"traceparent", ctx.header.encode())]
        if ctx.state is not None:
            added.append((b"tracestate", ctx.state.encode()))
        status = {"code": None}

        async def traced_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), *added]}
            await send(message)

        token = _current.set(ctx)
        try:
            with structlog.contextvars.bound_contextvars(trace_id=ctx.trace_id), \
                    tracing.span("api request", ctx, parent, kind="server",
                                 **{"http.request.method": scope.get("method"), "url.path": scope.get("path")}) as span:
                try:
                    await self.app(scope, receive, traced_send)
                finally:
                    if span is not None:
                        route = getattr(scope.get("route"), "path", None)
                        if route:
                            span.set_attribute("http.route", route)
                            span.update_name(f"api {scope.get('method')} {route}")
                        if status["code"] is not None:
                            span.set_attribute("http.response.status_code", status["code"])
        finally:
            _current.reset(token)
