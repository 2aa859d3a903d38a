"""/v1/voice/numbers: the account's verified caller ids."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from events.catalog import e164
from services.api import models
from services.api.auth import current_account
from services.api.body import read_object
from services.api.errors import ApiError, json_response
from services.common import accounts
from services.common.accounts import Account, AccountError, iso

router = APIRouter(tags=["numbers"])

_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/NumberCreate"}, "example": {"number": "+15559876543"}}}}}


def _number(n: dict) -> dict:
    return {"number": n["number"], "created_at": iso(n["created_at"])}


@router.get("/v1/voice/numbers", response_model=None, summary="List verified caller ids",
            responses={200: {"model": models.NumberList}, **models.errors(401, 503)})
async def list_numbers(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    pool = await request.app.state.runtime.db()
    return json_response({"data": [_number(n) for n in await accounts.list_numbers(pool, account.id)]})


@router.post("/v1/voice/numbers", status_code=201, response_model=None, openapi_extra=_BODY,
             summary="Verify a caller id for this account",
             responses={201: {"model": models.Number}, **models.errors(400, 401, 409, 413, 415, 422, 503)})
async def add_number(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    rt = request.app.state.runtime
    body = await read_object(request, 4096, {"number"})
    number = body.get("number")
    if number is None:
        raise ApiError(422, "missing_field", "number is required", "number")
    if not isinstance(number, str) or "\x00" in number:
        raise ApiError(422, "invalid_phone_number", "number must be an E.164 string", "number")
    try:
        row = await accounts.add_number(await rt.db(), account.id, number)
    except AccountError as exc:
        status = 409 if exc.code == "number_exists" else 422
        raise ApiError(status, exc.code, exc.message, "number") from None
    rt.numbers.invalidate(account.id)
    return json_response(_number(row), 201)


@router.delete("/v1/voice/numbers/{number}", status_code=204, response_model=None,
               summary="Remove a verified caller id",
               responses={204: {"description": "removed"}, **models.errors(401, 404, 503)})
async def delete_number(number: str, request: Request,
                        account: Annotated[Account, Depends(current_account)]) -> Response:
    rt = request.app.state.runtime
    try:
        normalized = e164(number.replace(" ", "+", 1) if number.startswith(" ") else number)
    except ValueError:
        raise ApiError(404, "number_not_found", f"{number[:32]!r} is not a verified number", "number") from None
    if not await accounts.remove_number(await rt.db(), account.id, normalized):
        raise ApiError(404, "number_not_found", f"{normalized} is not a verified number", "number")
    rt.numbers.invalidate(account.id)
    return Response(status_code=204)
