"""Health endpoints (no auth)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.api.errors import json_response

router = APIRouter(tags=["health"])
READY_TIMEOUT_S = 1.0
# One probe in flight per dependency (and event loop), however often /readyz is asked.
_probes: dict[tuple[str, asyncio.AbstractEventLoop], asyncio.Task] = {}


async def _within(name: str, check) -> bool:
    """Run `check` as a task and give it READY_TIMEOUT_S. A probe still stuck (a frozen Postgres
    holds even the cancellation of a query) is left to finish on its own and counts as down."""
    key = (name, asyncio.get_running_loop())
    task = _probes.get(key)
    if task is None or task.done():
        for k in [k for k in _probes if k[1].is_closed()]:
            del _probes[k]
        task = _probes[key] = asyncio.ensure_future(check())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
    done, _ = await asyncio.wait({task}, timeout=READY_TIMEOUT_S)
    if not done or task.cancelled() or task.exception() is not None:
        return False
    return bool(task.result())


@router.get("/healthz", summary="Liveness", response_model=None)
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", summary="Readiness: Postgres and Kafka reachable", response_model=None)
async def readyz(request: Request) -> Response:
    rt = request.app.state.runtime

    async def db_up() -> bool:
        return await (await rt.db()).fetchval("SELECT 1", timeout=READY_TIMEOUT_S) == 1

    async def kafka_up() -> bool:
        return await rt.kafka(raise_on_error=False) is not None

    # Both at once, each bounded: a stalled dependency answers 503 now, not when it returns.
    db_ok, kafka_ok = await asyncio.gather(_within("postgres", db_up), _within("kafka", kafka_up))
    ok = db_ok and kafka_ok
    return json_response({"status": "ok" if ok else "unavailable", "postgres": db_ok, "kafka": kafka_ok},
                         200 if ok else 503, headers=None if ok else {"Retry-After": "1"})
