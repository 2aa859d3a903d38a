"""One signed HTTP attempt, behind the SSRF guard and a hard timeout.

The receiver's answer is its status code; its body is never needed, so at most
:data:`MAX_RESPONSE_BYTES` of it are read (a small answer lets the connection be
reused) and the rest is never received: the connection is closed instead. An endless
or huge response costs that much memory, not its size.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from events import trace
from events.trace import TraceContext
from services.common import signing
from services.common.ssrf import SsrfError, check_url, guarded_async_client
from services.webhooks.policy import is_success

USER_AGENT = "Canary-Webhooks/1.0"
MAX_RESPONSE_BYTES = 64 * 1024  # of a receiver's response body that are read (then: close)


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status_code: int | None
    latency_ms: int
    error: str | None
    permanent: bool = False  # retrying cannot help (refused URL)

    @property
    def ok(self) -> bool:
        return self.status_code is not None and is_success(self.status_code)


def headers_for(secret: str, body: bytes, event_id: str, event_type: str, attempt: int,
                timestamp: int | None = None, traceparent: str | None = None,
                tracestate: str | None = None) -> dict[str, str]:
    """Every delivery carries its signature, the event id twice (idempotency), the attempt number
    and, when known, the call's trace (W3C `traceparent`, its parent this attempt's span, and the
    `tracestate` that came with it, unchanged)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        signing.HEADER: signing.sign(secret, body, timestamp),
        "Idempotency-Key": event_id,
        "Canary-Event-Id": event_id,
        "Canary-Event-Type": event_type,
        "Canary-Delivery-Attempt": str(attempt),
    }
    if traceparent is not None:
        headers["traceparent"] = traceparent
        if tracestate is not None:
            headers["tracestate"] = tracestate
    return headers


def attempt_trace(parent: TraceContext, event_id: str, attempt: int) -> TraceContext:
    """The span of one delivery attempt (derived: a repeated attempt number is the same span)."""
    return parent.child(trace.derive_span_id(f"webhooks/{event_id}/{attempt}"))


def make_client(max_connections: int) -> httpx.AsyncClient:
    """Guarded client: no redirects followed (a 3xx is a failed attempt), no env proxies."""
    return guarded_async_client(follow_redirects=False,
                                limits=httpx.Limits(max_connections=max_connections,
                                                    max_keepalive_connections=max_connections))


async def read_capped(resp: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of a streamed response body, as they came on the wire (no
    decompression: a small compressed body cannot inflate here); True if there was more.
    Reading stops there: closing the response then drops the connection unread."""
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return b"", True
    buf = bytearray()
    try:
        async for chunk in resp.aiter_raw():
            buf += chunk
            if len(buf) > limit:
                return bytes(buf[:limit]), True
    except httpx.StreamConsumed:  # a response built in memory (a test transport): already read
        return resp.content[:limit], len(resp.content) > limit
    return bytes(buf), False


def _find_ssrf(exc: BaseException | None) -> SsrfError | None:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, SsrfError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


async def post(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str],
               timeout: float) -> AttemptResult:
    """POST once; never raises. SSRF refusals are permanent, everything else retryable."""
    t0 = time.monotonic()

    def ms() -> int:
        return int((time.monotonic() - t0) * 1000)

    async def attempt() -> httpx.Response:
        async with client.stream("POST", url, content=body, headers=headers, timeout=httpx.Timeout(timeout)) as r:
            await read_capped(r, MAX_RESPONSE_BYTES)  # then leave: the rest is not read
            return r

    try:
        check_url(url)
        resp = await asyncio.wait_for(attempt(), timeout)
    except SsrfError as exc:
        return AttemptResult(None, ms(), f"refused: {exc}", permanent=True)
    except (asyncio.TimeoutError, httpx.TimeoutException):
        return AttemptResult(None, ms(), f"timeout after {timeout:g} s")
    except Exception as exc:  # connection refused, reset, DNS, protocol errors
        ssrf = _find_ssrf(exc)
        if ssrf is not None:
            return AttemptResult(None, ms(), f"refused: {ssrf}", permanent=True)
        return AttemptResult(None, ms(), f"{type(exc).__name__}: {exc}"[:500])
    if is_success(resp.status_code):
        return AttemptResult(resp.status_code, ms(), None)
    return AttemptResult(resp.status_code, ms(), f"HTTP {resp.status_code}")
