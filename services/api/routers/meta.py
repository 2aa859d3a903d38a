"""Health endpoints (no auth)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from services.api.errors import json_response

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness", response_model=None)
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", summary="Readiness: Postgres and Kafka reachable", response_model=None)
async def readyz(request: Request) -> Response:
    rt = request.app.state.runtime
    db_ok = kafka_ok = False
    try:
        pool = await rt.db()
        db_ok = await pool.fetchval("SELECT 1") == 1
    except Exception:
        pass
    kafka_ok = await rt.kafka(raise_on_error=False) is not None
    ok = db_ok and kafka_ok
    return json_response({"status": "ok" if ok else "unavailable", "postgres": db_ok, "kafka": kafka_ok},
                         200 if ok else 503, headers=None if ok else {"Retry-After": "1"})
