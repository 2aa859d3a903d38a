"""GET /v1/voice/calls/{id}/webhooks: every delivery of a call and each attempt.

`router` is built on first access, importing the API's auth dependency
(`services.api.auth.current_account`) only then, so the webhook worker never
imports the API. Tests build their own with `build_router(account_dep=...)`.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from services.api.deps import account_id_of, default_account_dep, lazy_router, pool_of
from services.webhooks import store


def build_router(account_dep: Callable[..., Any] | None = None) -> APIRouter:
    r = APIRouter(tags=["webhooks"])
    dep = account_dep or default_account_dep()

    @r.get("/v1/voice/calls/{call_id}/webhooks", summary="Webhook deliveries of a call, with every attempt")
    async def list_call_webhooks(call_id: str, request: Request, account: Any = Depends(dep)) -> dict[str, Any]:
        pool = await pool_of(request)
        async with pool.acquire() as conn:
            rows = await store.deliveries_for_call(conn, call_id, account_id_of(account))
        if rows is None:
            return JSONResponse(status_code=404, content={"error": {
                "code": "not_found", "message": f"no webhooks for call {call_id}", "field": None}})
        return {"call_id": call_id, "object": "list", "data": rows}

    return r


__getattr__ = lazy_router(build_router, globals())
