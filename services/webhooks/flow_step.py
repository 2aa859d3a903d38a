"""A flow's `webhook` step: POST the call's input to the app, turn its answer into an event.

Unlike status webhooks this is request/response: the app's JSON body (`{"steps": [...]}`
or a bare list of steps) decides what the caller hears next. Same signing and SSRF
guard as every delivery; one attempt with a short timeout, because a caller is waiting
on the line — a failure is an event too, and the flow moves on to the step's `next`.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson

from events import Envelope, trace
from services.common.text import nul_path
from services.common.ssrf import SsrfError, check_url
from services.webhooks import sender

MAX_BODY = 64 * 1024
TIMEOUT_S = 8.0


async def ask_app(client: httpx.AsyncClient, secret: str | None, req: Envelope) -> Envelope:
    """flow.webhook.requested -> flow.webhook.answered | flow.webhook.failed (never raises)."""
    step = req.data["step"]
    body = orjson.dumps({"call_id": req.call_id, "type": "flow.webhook", "step": step,
                         "digits": req.data.get("digits"), "speech": req.data.get("speech"),
                         "timestamp": int(time.time())})
    # The answer is read as it streams in, at most MAX_BODY bytes: a larger (or endless) one
    # fails the step without being received. Uncompressed, so its size on the wire is its size.
    # The call's trace, its parent this request (the span `handling` records around it).
    ctx = trace.handled(req)
    headers = {**sender.headers_for(secret or "", body, req.id, "flow.webhook", 1,
                                    traceparent=ctx.header, tracestate=ctx.state), "Accept-Encoding": "identity"}
    try:
        check_url(req.data["url"])
        async with asyncio.timeout(TIMEOUT_S):
            async with client.stream("POST", req.data["url"], content=body, headers=headers,
                                     timeout=httpx.Timeout(TIMEOUT_S)) as resp:
                raw, more = b"", False
                if 200 <= resp.status_code < 300:
                    raw, more = await sender.read_capped(resp, MAX_BODY)
                encoding = resp.headers.get("content-encoding", "identity").strip().lower()
    except SsrfError as exc:
        return req.caused("flow.webhook.failed", {"step": step, "reason": f"refused: {exc}"})
    except (asyncio.TimeoutError, httpx.TimeoutException):
        return req.caused("flow.webhook.failed", {"step": step, "reason": f"timeout after {TIMEOUT_S:g} s"})
    except Exception as exc:
        return req.caused("flow.webhook.failed", {"step": step, "reason": f"{type(exc).__name__}: {exc}"[:300]})
    if not 200 <= resp.status_code < 300:
        return req.caused("flow.webhook.failed", {"step": step, "reason": f"HTTP {resp.status_code}"})
    if more:
        return req.caused("flow.webhook.failed", {"step": step, "reason": "answer larger than 64 KiB"})
    if encoding not in ("identity", ""):
        return req.caused("flow.webhook.failed", {"step": step, "reason": f"answer is {encoding[:20]}-encoded;"
                                                  " send it uncompressed (Accept-Encoding: identity)"})
    try:
        answer = orjson.loads(raw) if raw.strip() else {"steps": []}
    except orjson.JSONDecodeError:
        return req.caused("flow.webhook.failed", {"step": step, "reason": "answer is not JSON"})
    steps = answer.get("steps") if isinstance(answer, dict) else answer
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        return req.caused("flow.webhook.failed", {"step": step, "reason": "answer must be {\"steps\": [...]}"})
    if (where := nul_path(steps)) is not None:  # Postgres could not store it: refused here, with where
        return req.caused("flow.webhook.failed", {"step": step, "reason": f"answer has a NUL (U+0000) in "
                                                                          f"steps{where}"})
    return req.caused("flow.webhook.answered", {"step": step, "steps": steps})
