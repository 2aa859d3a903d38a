"""/v1/voice/numbers: the account's caller ids, and their verification.

A sk_test_ key's number is verified at once, for sandbox calls only. A sk_live_ key's
number gets a verification call speaking a code (services/api/caller_ids.py), and is
usable by live calls once POST /v1/voice/numbers/{number}/verify has that code.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from events.catalog import e164
from services.api import caller_ids, models
from services.api.auth import current_account
from services.api.body import read_object
from services.api.errors import ApiError, json_response
from services.common import accounts
from services.common.accounts import LIVE_GRADE, Account, AccountError, iso
from services.lib import inbound

router = APIRouter(tags=["numbers"])

_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/NumberCreate"}, "example": {"number": "+15559876543"}}}}}
_ROUTE_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/NumberRouteUpdate"},
    "example": {"voice_url": "https://example.com/voice", "webhook_url": "https://example.com/status"}}}}}
_VERIFY_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/NumberVerify"}, "example": {"code": "123456"}}}}}


def _number(n: dict, verification: str) -> dict:
    return {"number": n["number"], "created_at": iso(n["created_at"]), "verification": verification,
            **inbound.public_route(n)}


def _usable(account: Account, verified_by: str) -> bool:
    """Whether this key's calls may show a number verified that way."""
    return account.mode == "test" or verified_by in LIVE_GRADE


def _path_number(number: str) -> str | None:
    try:
        return e164(number.replace(" ", "+", 1) if number.startswith(" ") else number)
    except ValueError:
        return None


@router.get("/v1/voice/numbers", response_model=None, summary="List caller ids and their verification",
            responses={200: {"model": models.NumberList}, **models.errors(401, 503)})
async def list_numbers(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    pool = await request.app.state.runtime.db()
    out: dict[str, dict] = {}
    for n in await accounts.list_numbers(pool, account.id):
        out[n["number"]] = _number(n, "verified" if _usable(account, n["verified_by"]) else "pending")
    for number, created in (await caller_ids.pending(pool, account.id)).items():
        if out.get(number, {}).get("verification") != "verified":
            out[number] = _number({"number": number, "created_at": created}, "pending")
    return json_response({"data": [out[k] for k in sorted(out)]})


@router.post("/v1/voice/numbers", status_code=201, response_model=None, openapi_extra=_BODY,
             summary="Add a caller id: verified at once for a sk_test_ key (sandbox calls only); a sk_live_ key "
                     "gets a verification call speaking a code (then POST .../verify)",
             responses={201: {"model": models.Number}, **models.errors(400, 401, 409, 413, 415, 422, 429, 503)})
async def add_number(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    rt = request.app.state.runtime
    body = await read_object(request, 4096, {"number"})
    number = body.get("number")
    if number is None:
        raise ApiError(422, "missing_field", "number is required", "number")
    if not isinstance(number, str) or "\x00" in number:
        raise ApiError(422, "invalid_phone_number", "number must be an E.164 string", "number")
    if account.mode == "test":
        try:
            row = await accounts.add_number(await rt.db(), account.id, number, "sandbox")
        except AccountError as exc:
            status = 409 if exc.code == "number_exists" else 422
            raise ApiError(status, exc.code, exc.message, "number") from None
        rt.numbers.invalidate(account.id)
        return json_response(_number(row, "verified"), 201)
    try:
        number = e164(number)
    except ValueError as exc:
        raise ApiError(422, "invalid_phone_number", str(exc), "number") from None
    pool = await rt.db()
    if await accounts.is_verified(pool, account.id, number, live=True):
        raise ApiError(409, "number_exists", f"{number} is already verified for this account", "number")
    row = await caller_ids.start(rt, account, number)
    return json_response(_number(row, "pending"), 201)


@router.post("/v1/voice/numbers/{number}/verify", response_model=None, openapi_extra=_VERIFY_BODY,
             summary="Verify a caller id with the code its verification call spoke",
             responses={200: {"model": models.Number}, **models.errors(400, 401, 403, 404, 409, 410, 413, 415, 422,
                                                                       429, 503)})
async def verify_number(number: str, request: Request,
                        account: Annotated[Account, Depends(current_account)]) -> Response:
    rt = request.app.state.runtime
    normalized = _path_number(number)
    body = await read_object(request, 1024, {"code"})
    if normalized is None:
        raise ApiError(404, "verification_not_found", f"{number[:32]!r} has no verification pending", "number")
    if "code" not in body:
        raise ApiError(422, "missing_field", "code is required", "code")
    row = await caller_ids.check(rt, account, normalized, body["code"])
    rt.numbers.invalidate(account.id)
    return json_response(_number(row, "verified"))


@router.delete("/v1/voice/numbers/{number}", status_code=204, response_model=None,
               summary="Remove a caller id (verified or pending)",
               responses={204: {"description": "removed"}, **models.errors(401, 404, 503)})
async def delete_number(number: str, request: Request,
                        account: Annotated[Account, Depends(current_account)]) -> Response:
    rt = request.app.state.runtime
    normalized = _path_number(number)
    if normalized is None:
        raise ApiError(404, "number_not_found", f"{number[:32]!r} is not a verified number", "number")
    pool = await rt.db()
    removed = await accounts.remove_number(pool, account.id, normalized)
    dropped = await pool.execute("DELETE FROM caller_id_verifications WHERE account_id = $1 AND number = $2",
                                 account.id, normalized)
    if not removed and not dropped.endswith(" 1"):
        raise ApiError(404, "number_not_found", f"{normalized} is not a verified number", "number")
    rt.numbers.invalidate(account.id)
    return Response(status_code=204)


@router.patch("/v1/voice/numbers/{number}", response_model=None, openapi_extra=_ROUTE_BODY,
              summary="How the number answers incoming calls: voice_url (its app returns the flow) or flow_id "
                      "(a stored flow), and webhook_url for its calls' status webhooks; null clears one",
              responses={200: {"model": models.Number}, **models.errors(400, 401, 404, 413, 415, 422, 503)})
async def route_number(number: str, request: Request,
                       account: Annotated[Account, Depends(current_account)]) -> Response:
    rt = request.app.state.runtime
    normalized = _path_number(number)
    body = await read_object(request, 8192, set(inbound.ROUTE_FIELDS))
    try:
        changes = inbound.check_changes(body)
        row = None if normalized is None else await inbound.set_route(await rt.db(), account.id, normalized, changes)
    except inbound.RouteError as exc:
        raise ApiError(422, exc.code, exc.message, exc.field) from None
    if row is None:
        raise ApiError(404, "number_not_found", f"{(normalized or number)[:32]!r} is not a number of this account",
                       "number")
    return json_response(_number(dict(row), "verified" if _usable(account, row["verified_by"]) else "pending"))
