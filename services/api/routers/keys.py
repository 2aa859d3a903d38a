"""/v1/voice/keys: the account's API keys, listed, created and revoked with a key.

    GET    /v1/voice/keys          every key of the account (prefix only, never the key)
    POST   /v1/voice/keys          body: {"mode": "test" | "live"} -> 201, with the key (shown once)
    DELETE /v1/voice/keys/{id}     204: revoked

A sandbox (`sk_test_`) key creates sandbox keys only: a key must never be a way to a
mode it does not have. The key making the request cannot revoke itself (409
`key_in_use`), so a console cannot lock its own session out by a slip.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from services.api import models
from services.api.auth import current_account
from services.api.body import read_object
from services.api.errors import ApiError, json_response
from services.common import accounts
from services.common.accounts import Account, iso

router = APIRouter(tags=["keys"])

_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "additionalProperties": False, "properties": {
        "mode": {"enum": ["test", "live"], "description": "default: the mode of the key making the request"}}},
    "example": {"mode": "test"}}}}}

_LIST = ("SELECT id, prefix, mode, created_at, revoked_at FROM api_keys WHERE account_id = $1"
         " ORDER BY created_at DESC, id DESC")


def _key(row, current: str) -> dict:
    return {"object": "api_key", "id": row["id"], "prefix": row["prefix"], "mode": row["mode"],
            "created_at": iso(row["created_at"]), "revoked_at": iso(row["revoked_at"]), "current": row["id"] == current}


@router.get("/v1/voice/keys", response_model=None, summary="The account's API keys",
            responses={200: {"description": "list"}, **models.errors(401, 503)})
async def list_keys(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    rows = await (await request.app.state.runtime.db()).fetch(_LIST, account.id)
    return json_response({"object": "list", "data": [_key(r, account.key_id) for r in rows]})


@router.post("/v1/voice/keys", status_code=201, response_model=None, openapi_extra=_BODY,
             summary="Create an API key (the response is the only time the key is shown)",
             responses={201: {"description": "created"}, **models.errors(400, 401, 403, 413, 415, 422, 503)})
async def create_key(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    mode = (await read_object(request, 1024, {"mode"})).get("mode", account.mode)
    if mode not in accounts.MODES:
        raise ApiError(422, "invalid_field", "mode must be 'test' or 'live'", "mode")
    if mode == "live" and account.mode != "live":
        raise ApiError(403, "forbidden", "a sandbox key cannot create live keys", "mode")
    pool = await request.app.state.runtime.db()
    key_id, key = await accounts.create_key(pool, account.id, mode)
    row = await pool.fetchrow("SELECT id, prefix, mode, created_at, revoked_at FROM api_keys WHERE id = $1", key_id)
    return json_response({**_key(row, account.key_id), "key": key}, 201)


@router.delete("/v1/voice/keys/{key_id}", status_code=204, response_model=None, summary="Revoke an API key",
               responses={204: {"description": "revoked"}, **models.errors(401, 404, 409, 503)})
async def revoke_key(key_id: str, request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    if key_id == account.key_id:
        raise ApiError(409, "key_in_use", "this request's own key cannot revoke itself: use another key", "id")
    rt = request.app.state.runtime
    pool = await rt.db()
    res = await pool.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND account_id = $2"
                             " AND revoked_at IS NULL", key_id, account.id)
    if not res.endswith(" 1"):
        raise ApiError(404, "key_not_found", f"no live key {key_id[:64]} on this account", "id")
    rt.forget_key(key_id)
    return Response(status_code=204)
