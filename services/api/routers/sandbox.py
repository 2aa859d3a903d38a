"""/v1/voice/sandbox/callees: scripted callees of the sandbox carrier.

    GET    /v1/voice/sandbox/callees           the account's scripted sandbox callees
    POST   /v1/voice/sandbox/callees           attach one (201; replaces an existing one: 200)
    DELETE /v1/voice/sandbox/callees/{number}
    POST   /v1/voice/sandbox/calls-in          a sandbox caller dials one of the account's numbers (201)
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from services.api import models
from services.api.auth import current_account
from services.api.body import read_object
from services.api.errors import ApiError, json_response
from events import topics
from services.common.accounts import Account, iso
from services.lib import inbound
from services.lib import trunks as repo
from services.lib.trunks import TrunkError

router = APIRouter(tags=["telephony"])

CALLEE_FIELDS = {"number", "ring", "answer", "after", "press", "say", "say_voice", "hangup_after", "voicemail", "beep"}

_DURATION = {"oneOf": [{"type": "number", "minimum": 0}, {"type": "string", "examples": ["2s", "500ms", "1.5"]}]}
_CALLEE_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["number"], "additionalProperties": False, "properties": {
        "number": {"type": "string", "description": "sandbox number (E.164), not a magic number"},
        "ring": {**_DURATION, "default": 1.0}, "answer": {"type": "boolean", "default": True},
        "after": {**_DURATION, "default": 0}, "press": {"type": "string", "pattern": "^[0-9*#A-D]{0,64}$"},
        "say": {"type": "string", "maxLength": 1000}, "say_voice": {"type": "string"},
        "hangup_after": {"oneOf": [*_DURATION["oneOf"], {"type": "null"}]},
        "voicemail": {"type": "string", "maxLength": 1000,
                      "description": "a voicemail: this greeting is played on answer (after `after`), then it listens"},
        "beep": {"type": "boolean", "default": False, "description": "the voicemail beeps after its greeting"}}},
    "example": {"number": "+15557770001", "ring": "1s", "after": "2s", "press": "1234#"}}}}}


def _callee(c: dict[str, Any]) -> dict[str, Any]:
    s = c["script"]
    return {"object": "sandbox_callee", "number": c["number"], "ring": s.get("ring", 1.0),
            "answer": s.get("answer", True), "after": s.get("after", 0.0), "press": s.get("press", ""),
            "say": s.get("say", ""), "say_voice": s.get("say_voice"), "hangup_after": s.get("hangup_after"),
            "voicemail": s.get("voicemail", ""), "beep": s.get("beep", False), "created_at": iso(c["created_at"])}


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
    b = await read_object(request, 16 * 1024, CALLEE_FIELDS)
    if b.get("number") is None:
        raise ApiError(422, "missing_field", "number is required", "number")
    try:
        given = {k: b[k] for k in CALLEE_FIELDS - {"number"}
                 if k in b and (b[k] is not None or k == "hangup_after")}
        script = repo.callee_script(**given)
        row, created = await repo.set_callee(await request.app.state.runtime.db(), b["number"], account.id, script)
    except TrunkError as exc:
        raise ApiError(422, exc.code, exc.message, exc.field) from None
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


CALL_IN_FIELDS = {"to", "from", "after", "press", "say", "say_voice", "hangup_after"}
_CALL_IN_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/SandboxCallIn"},
    "example": {"from": "+15551230001", "to": "+15559876543", "after": "1s", "press": "1"}}}}}


@router.post("/v1/voice/sandbox/calls-in", status_code=201, response_model=None, openapi_extra=_CALL_IN_BODY,
             summary="A sandbox caller dials one of the account's numbers: the call comes in as from a phone "
                     "(direction inbound) and runs the number's voice_url or flow; the caller presses `press`",
             responses={201: {"model": models.CallCreated}, **models.errors(400, 401, 403, 404, 413, 415, 422, 503)})
async def call_in(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    rt = request.app.state.runtime
    b = await read_object(request, 16 * 1024, CALL_IN_FIELDS)
    if account.mode != "test":
        raise ApiError(403, "sandbox_only", "calls-in are for sk_test_ keys (sandbox); live numbers are called "
                                            "through their SIP trunk")
    for name in ("to", "from"):
        if b.get(name) is None:
            raise ApiError(422, "missing_field", f"{name} is required", name)
    try:
        caller = repo.callee_script(ring=0.2, **{k: b[k] for k in ("after", "press", "say", "say_voice",
                                                                   "hangup_after") if b.get(k) is not None})
        env = await inbound.sandbox_call(await rt.db(), account.id, b["to"], b["from"], caller)
    except repo.TrunkError as exc:
        raise ApiError(422, exc.code, exc.message, exc.field) from None
    except inbound.RouteError as exc:
        raise ApiError(404 if exc.code == "number_not_found" else 422, exc.code, exc.message, exc.field) from None
    await rt.publish(topics.events(), env, command=False)
    d = env.data
    return json_response({"id": env.call_id, "to": d["to"], "from": d["from"], "status": "queued",
                          "direction": "inbound", "created_at": env.occurred_at}, 201)
