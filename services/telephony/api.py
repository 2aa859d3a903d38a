"""/v1/voice/trunk and /v1/voice/sandbox/callees: the caller's telephony settings.

    GET    /v1/voice/trunk                     the account's SIP trunk (password: has_password only)
    PUT    /v1/voice/trunk                     create or replace it (password write-only; absent = keep)
    DELETE /v1/voice/trunk
    GET    /v1/voice/sandbox/callees           the account's scripted sandbox callees
    POST   /v1/voice/sandbox/callees           attach one (201; replaces an existing one: 200)
    DELETE /v1/voice/sandbox/callees/{number}

Included by services.api.app (OPTIONAL_ROUTERS) when present.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from services.api import models
from services.api.auth import current_account
from services.api.body import read_json
from services.api.errors import ApiError, json_response
from services.common.accounts import Account, iso
from services.telephony import trunks as repo
from services.telephony.trunks import TrunkError

router = APIRouter(tags=["telephony"])

TRUNK_FIELDS = {"host", "port", "transport", "username", "password", "caller_id", "allowed_from_prefixes"}
CALLEE_FIELDS = {"number", "ring", "answer", "after", "press", "say", "say_voice", "hangup_after"}

_TRUNK_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["host"], "additionalProperties": False, "properties": {
        "host": {"type": "string", "description": "trunk hostname or IP address"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 5060},
        "transport": {"type": "string", "enum": list(repo.TRANSPORTS), "default": "udp"},
        "username": {"type": ["string", "null"], "description": "digest auth user name"},
        "password": {"type": ["string", "null"], "writeOnly": True,
                     "description": "digest password; write-only. Absent: keep the stored one; null: remove"},
        "caller_id": {"type": ["string", "null"],
                      "description": "fixed caller id (E.164); the fallback when allowed_from_prefixes is set"},
        "allowed_from_prefixes": {"type": "array", "items": {"type": "string", "pattern": r"^\+[0-9]{0,15}$"},
                                  "description": "when set, `from` must start with one of these"}}},
    "example": {"host": "sip.example.net", "port": 5060, "username": "acme", "password": "s3cret",
                "caller_id": "+15559876543"}}}}}

_DURATION = {"oneOf": [{"type": "number", "minimum": 0}, {"type": "string", "examples": ["2s", "500ms", "1.5"]}]}
_CALLEE_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["number"], "additionalProperties": False, "properties": {
        "number": {"type": "string", "description": "sandbox number (E.164), not a magic number"},
        "ring": {**_DURATION, "default": 1.0}, "answer": {"type": "boolean", "default": True},
        "after": {**_DURATION, "default": 0}, "press": {"type": "string", "pattern": "^[0-9*#A-D]{0,64}$"},
        "say": {"type": "string", "maxLength": 1000}, "say_voice": {"type": "string"},
        "hangup_after": {"oneOf": [*_DURATION["oneOf"], {"type": "null"}]}}},
    "example": {"number": "+15557770001", "ring": "1s", "after": "2s", "press": "1234#"}}}}}


def _err(exc: TrunkError, status: int = 422) -> ApiError:
    return ApiError(status, exc.code, exc.message, exc.field)


async def _body(request: Request, allowed: set[str]) -> dict[str, Any]:
    body = await read_json(request, 16 * 1024)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", "the request body must be a JSON object")
    extra = sorted(set(body) - allowed)
    if extra:
        raise ApiError(422, "unknown_field", f"unknown field {extra[0]!r}", str(extra[0])[:100])
    return body


def _trunk(t: dict[str, Any]) -> dict[str, Any]:
    return {"object": "sip_trunk", "host": t["host"], "port": t["port"], "transport": t["transport"],
            "username": t["username"], "has_password": t["has_password"], "caller_id": t["caller_id"],
            "allowed_from_prefixes": t["allowed_from_prefixes"], "created_at": iso(t["created_at"]),
            "updated_at": iso(t["updated_at"])}


def _callee(c: dict[str, Any]) -> dict[str, Any]:
    s = c["script"]
    return {"object": "sandbox_callee", "number": c["number"], "ring": s.get("ring", 1.0),
            "answer": s.get("answer", True), "after": s.get("after", 0.0), "press": s.get("press", ""),
            "say": s.get("say", ""), "say_voice": s.get("say_voice"), "hangup_after": s.get("hangup_after"),
            "created_at": iso(c["created_at"])}


@router.get("/v1/voice/trunk", response_model=None, summary="The account's SIP trunk",
            responses={200: {"description": "the trunk (the password is never returned: has_password)"},
                       **models.errors(401, 404, 503)})
async def get_trunk(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    t = await repo.get_trunk(await request.app.state.runtime.db(), account.id)
    if t is None:
        raise ApiError(404, "trunk_not_found", "this account has no SIP trunk")
    return json_response(_trunk(t))


@router.put("/v1/voice/trunk", response_model=None, openapi_extra=_TRUNK_BODY,
            summary="Create or replace the account's SIP trunk",
            responses={200: {"description": "the trunk"}, **models.errors(400, 401, 413, 415, 422, 503)})
async def put_trunk(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    b = await _body(request, TRUNK_FIELDS)
    if b.get("host") is None:
        raise ApiError(422, "missing_field", "host is required", "host")
    try:
        t = await repo.set_trunk(
            await request.app.state.runtime.db(), account.id, host=b["host"], port=b.get("port", 5060),
            transport=b.get("transport", "udp"), username=b.get("username"),
            password=b["password"] if "password" in b else repo.KEEP, caller_id=b.get("caller_id"),
            allowed_from_prefixes=b.get("allowed_from_prefixes"))
    except TrunkError as exc:
        raise _err(exc) from None
    return json_response(_trunk(t))


@router.delete("/v1/voice/trunk", status_code=204, response_model=None, summary="Remove the account's SIP trunk",
               responses={204: {"description": "removed"}, **models.errors(401, 404, 503)})
async def delete_trunk(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    if not await repo.delete_trunk(await request.app.state.runtime.db(), account.id):
        raise ApiError(404, "trunk_not_found", "this account has no SIP trunk")
    return Response(status_code=204)


@router.get("/v1/voice/sandbox/callees", response_model=None, summary="The account's scripted sandbox callees",
            responses={200: {"description": "list"}, **models.errors(401, 503)})
async def list_callees(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    rows = await repo.list_callees(await request.app.state.runtime.db(), account.id)
    return json_response({"object": "list", "data": [_callee(r) for r in rows]})


@router.post("/v1/voice/sandbox/callees", status_code=201, response_model=None, openapi_extra=_CALLEE_BODY,
             summary="Attach a scripted callee to a sandbox number",
             responses={201: {"description": "created"}, 200: {"description": "replaced an existing one"},
                        **models.errors(400, 401, 413, 415, 422, 503)})
async def add_callee(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    b = await _body(request, CALLEE_FIELDS)
    if b.get("number") is None:
        raise ApiError(422, "missing_field", "number is required", "number")
    try:
        given = {k: b[k] for k in CALLEE_FIELDS - {"number"}
                 if k in b and (b[k] is not None or k == "hangup_after")}
        script = repo.callee_script(**given)
        row, created = await repo.set_callee(await request.app.state.runtime.db(), b["number"], account.id, script)
    except TrunkError as exc:
        raise _err(exc) from None
    return json_response(_callee(row), 201 if created else 200)


@router.delete("/v1/voice/sandbox/callees/{number}", status_code=204, response_model=None,
               summary="Remove a scripted sandbox callee",
               responses={204: {"description": "removed"}, **models.errors(401, 404, 503)})
async def delete_callee(number: str, request: Request,
                        account: Annotated[Account, Depends(current_account)]) -> Response:
    if number.startswith(" "):  # '+' decoded as a space from an unencoded path
        number = "+" + number[1:]
    if not await repo.remove_callee(await request.app.state.runtime.db(), number, account.id):
        raise ApiError(404, "callee_not_found", f"no scripted callee {number[:32]} on this account", "number")
    return Response(status_code=204)
