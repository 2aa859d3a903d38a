"""GET /v1/voice/calls/{id}/webhooks: every delivery of a call and each attempt."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from services.api.auth import current_account
from services.api.errors import ApiError
from services.common.accounts import Account
from services.lib.webhook_deliveries import deliveries_for_call

router = APIRouter(tags=["webhooks"])


@router.get("/v1/voice/calls/{call_id}/webhooks", summary="Webhook deliveries of a call, with every attempt")
async def list_call_webhooks(call_id: str, request: Request,
                             account: Annotated[Account, Depends(current_account)]) -> dict[str, Any]:
    pool = await request.app.state.runtime.db()
    async with pool.acquire() as conn:
        rows = await deliveries_for_call(conn, call_id, account.id)
    if rows is None:
        raise ApiError(404, "not_found", f"no webhooks for call {call_id}")
    return {"call_id": call_id, "object": "list", "data": rows}
