"""Request latency for Prometheus (``canary_http_request_seconds``), as a plain ASGI wrapper.

Labelled by the matched route's template (``/v1/voice/calls/{call_id}``), never the raw path:
call ids in a label would make one series per call. A request no route matched is
``unmatched``. Streaming responses (the SSE event streams) are timed to their first byte,
which is what a client waits for; their length is the stream's, not the API's speed.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from services.common.metrics import HTTP_SECONDS

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


class RequestMetrics:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500, "timed": False}

        async def timed_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not status["timed"]:
                status["timed"] = True
                self._observe(scope, status["code"], t0)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if not status["timed"]:
                self._observe(scope, status["code"], t0)

    @staticmethod
    def _observe(scope: Scope, code: int, t0: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        HTTP_SECONDS.labels(scope["method"], path, f"{code // 100}xx").observe(time.perf_counter() - t0)
