"""Each service's health, as its own loops see it, served on ``GET /healthz`` when asked
(beside ``GET /metrics``, Prometheus' text format: services/common/metrics.py).

A service is **degraded** when a dependency failed in the last `window` seconds and has
not worked since (what :func:`services.common.consumer.retry_transient` and the
consume-with-tracking block retry: a lost connection, a timeout), or when its main loop
has not come round for `stall_s` seconds (a stalled Postgres answers nothing, so nothing
fails: the loop just stops turning). It carries on by itself once the dependency is back;
health says so by turning ``ok`` again. 503 while degraded, so a load balancer or an
orchestrator's probe can act on it without parsing.

Served only when ``CANARY_HEALTH_PORT`` is set (give each process its own port), by a
minimal HTTP responder: one fixed route, no dependencies. It binds ``CANARY_HEALTH_HOST``
(loopback unless told: a pod sets its own address, so the kubelet's probes reach it).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

WINDOW_S = 30.0  # a failure not repeated for this long no longer counts


class Health:
    def __init__(self, stall_s: float = 5.0):
        self.stall_s = stall_s
        self.failing: dict[str, tuple[float, float, str]] = {}  # what -> (since, last, error)
        self.beat = time.monotonic()
        self.started = time.monotonic()

    def failed(self, what: str, error: str) -> None:
        """A transient failure of `what` (it will be retried)."""
        now = time.monotonic()
        since = self.failing.get(what, (now, now, ""))[0]
        self.failing[what] = (since, now, error[:300])

    def worked(self, what: str) -> None:
        """`what` succeeded (after failing, or not)."""
        self.failing.pop(what, None)

    def alive(self) -> None:
        """The main loop came round."""
        self.beat = time.monotonic()

    def report(self) -> dict[str, Any]:
        now = time.monotonic()
        for what in [w for w, (_, last, _) in self.failing.items() if now - last > WINDOW_S]:
            del self.failing[what]
        problems = [{"what": w, "failing_for_s": round(now - since, 1), "error": err}
                    for w, (since, _, err) in sorted(self.failing.items())]
        stalled = now - self.beat
        if stalled > self.stall_s:
            problems.append({"what": "main loop", "failing_for_s": round(stalled, 1),
                             "error": "has not come round (waiting on a dependency that does not answer?)"})
        return {"status": "degraded" if problems else "ok", "problems": problems,
                "uptime_s": round(now - self.started, 1)}


HEALTH = Health()


async def serve_health(port: int, name: str, host: str = "127.0.0.1") -> asyncio.AbstractServer:
    """``GET /healthz`` -> 200 ``{"status": "ok", ...}`` or 503 when degraded; ``GET /metrics`` ->
    the process's metrics; anything else 404."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            line = head.split(b"\r\n", 1)[0].split()
            path = line[1].split(b"?")[0] if len(line) >= 2 and line[0] == b"GET" else b""
            ctype = b"application/json"
            if path == b"/healthz":
                report = {"service": name, **HEALTH.report()}
                status = b"200 OK" if report["status"] == "ok" else b"503 Service Unavailable"
                body = orjson.dumps(report)
            elif path == b"/metrics":
                from services.common import metrics

                status, body, ctype = b"200 OK", metrics.exposition(), metrics.CONTENT_TYPE.encode()
            else:
                status, body = b"404 Not Found", b'{"error": "not found"}'
            writer.write(b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%s" % (status, ctype, len(body), body))
            await writer.drain()
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port, limit=8192)
