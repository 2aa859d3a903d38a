"""/v1/voice/flows: stored, versioned IVR flows, validated on save.

    POST   /v1/voice/flows                 body: a flow document -> 201, version 1
    GET    /v1/voice/flows                 latest version of each live flow
    GET    /v1/voice/flows/{id}[?version=] latest (or an older) version
    GET    /v1/voice/flows/{id}/versions   the version numbers
    PUT    /v1/voice/flows/{id}            body: a flow document -> the next version
    DELETE /v1/voice/flows/{id}            204; versions are kept for calls that ran them
    POST   /v1/voice/flows/validate        body: a flow document -> {"valid", "errors"} (nothing stored)
    POST   /v1/voice/flows/simulate        body: {"flow" | "flow_id" [+ "version"], "inputs", "answered_by"}
                                           -> the path a caller giving those inputs takes (no call placed)

An invalid flow is refused with 422 and every error, each naming where it is:
`{"error": {"code": "invalid_flow", "message": ..., "field": "steps.menu", "errors": [{"field": "steps.menu",
"code": "missing_target", "message": "branches.2 -> 'nowhere' is not a step", "path":
"steps.menu.branches.2"}]}}`.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from services.api.auth import current_account
from services.api.body import read_body, refuse_nul
from services.api.errors import ApiError
from services.common.accounts import Account
from services.lib.flows import store
from services.lib.flows.engine import DIAL_OUTCOMES, TRANSFER_OUTCOMES
from services.lib.flows.validate import validate_flow

MAX_BODY = 512 * 1024

router = APIRouter(prefix="/v1/voice/flows", tags=["flows"])
CurrentAccount = Annotated[Account, Depends(current_account)]


def _not_found(flow_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no flow {flow_id}")


async def _json_body(request: Request) -> Any:
    raw = await read_body(request, MAX_BODY)  # streamed, 413 at the first byte over (never buffered whole)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"body is not JSON: {exc}") from None
    refuse_nul(doc)
    return doc


def _check(doc: Any) -> dict[str, Any]:
    """`doc` when it is a valid flow, else the 422 naming every error."""
    errors = validate_flow(doc)
    if errors:
        first = errors[0]
        raise ApiError(422, "invalid_flow", f"{first.field}: {first.message}", first.field,
                       errors=[e.to_dict() for e in errors])
    return doc


async def _flow_body(request: Request) -> dict[str, Any]:
    return _check(await _json_body(request))


@router.post("/validate", summary="Check a flow without storing it")
async def check_flow(request: Request, account: CurrentAccount):
    """The same checks as a save, answered as data (200 either way) so an editor can show
    every error on the step it concerns while the flow is still being written."""
    errors = validate_flow(await _json_body(request))
    return {"valid": not errors, "errors": [e.to_dict() for e in errors]}


_INPUT_KINDS = ("press", "say", "dial", "transfer")


def _inputs(raw: Any) -> list[tuple[str, str]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > 100:
        raise ApiError(422, "invalid_field", "inputs: a list of up to 100 {\"press\": keys}, {\"say\": words},"
                       " {\"dial\": outcome} or {\"transfer\": outcome}", "inputs")
    out = []
    for i, item in enumerate(raw):
        if not (isinstance(item, dict) and len(item) == 1 and next(iter(item)) in _INPUT_KINDS
                and isinstance(next(iter(item.values())), str) and len(next(iter(item.values()))) <= 1000):
            raise ApiError(422, "invalid_field", "each input is {\"press\": \"12#\"}, {\"say\": \"billing\"},"
                           " {\"dial\": \"busy\"} or {\"transfer\": \"failed\"}", f"inputs.{i}")
        (kind, value), = item.items()
        if kind == "dial" and value not in DIAL_OUTCOMES:
            raise ApiError(422, "invalid_field", f"a dial outcome is one of {', '.join(DIAL_OUTCOMES)}",
                           f"inputs.{i}")
        if kind == "transfer" and value not in TRANSFER_OUTCOMES:
            raise ApiError(422, "invalid_field", f"a transfer outcome is one of {', '.join(TRANSFER_OUTCOMES)}",
                           f"inputs.{i}")
        out.append((kind, value))
    return out


@router.post("/simulate", summary="Walk a flow with scripted caller input (no call is placed)")
async def simulate_flow(request: Request, account: CurrentAccount):
    """What `canary-voice flows simulate` prints, for an inline `flow` or a stored `flow_id`."""
    from events.catalog import ANSWERED_BY
    from services.lib.flows.simulate import simulate

    body = await _json_body(request)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_field", "the body is an object: {\"flow\" | \"flow_id\", \"inputs\"}", None)
    unknown = set(body) - {"flow", "flow_id", "version", "inputs", "answered_by"}
    if unknown:
        raise ApiError(422, "invalid_field", f"unknown field {sorted(unknown)[0]!r}", sorted(unknown)[0])
    if ("flow" in body) == ("flow_id" in body):
        raise ApiError(422, "conflicting_fields", "give exactly one of flow and flow_id", "flow")
    answered_by = body.get("answered_by")
    if answered_by is not None and answered_by not in ANSWERED_BY:
        raise ApiError(422, "invalid_field", f"answered_by: one of {', '.join(ANSWERED_BY)}", "answered_by")
    inputs = _inputs(body.get("inputs"))
    if "flow" in body:
        flow = _check(body["flow"])
    else:
        version = body.get("version")
        if not isinstance(body["flow_id"], str) or (version is not None and (
                not isinstance(version, int) or isinstance(version, bool) or version < 1)):
            raise ApiError(422, "invalid_field", "flow_id is a string, version a positive integer", "flow_id")
        async with (await request.app.state.runtime.db()).acquire() as conn:
            stored = await store.get(conn, account.id, body["flow_id"], version)
        if not stored:
            raise ApiError(404, "flow_not_found", f"no flow {body['flow_id'][:64]}", "flow_id")
        flow = stored["flow"]
    return simulate(flow, inputs, answered_by=answered_by).to_dict()


@router.post("", status_code=201, summary="Store a new flow (version 1)")
async def create_flow(request: Request, account: CurrentAccount):
    doc = await _flow_body(request)
    async with (await request.app.state.runtime.db()).acquire() as conn:
        out = await store.create(conn, account.id, doc)
    return JSONResponse(status_code=201, content=out, headers={"Location": f"/v1/voice/flows/{out['id']}"})


@router.get("", summary="Latest version of every flow")
async def list_flows(request: Request, account: CurrentAccount, limit: int = Query(100, ge=1, le=500)):
    async with (await request.app.state.runtime.db()).acquire() as conn:
        rows = await store.list_flows(conn, account.id, limit)
    return {"object": "list", "data": rows}


@router.get("/{flow_id}", summary="A flow: the latest version, or ?version=N")
async def get_flow(flow_id: str, request: Request, account: CurrentAccount, version: int | None = Query(None, ge=1)):
    async with (await request.app.state.runtime.db()).acquire() as conn:
        out = await store.get(conn, account.id, flow_id, version)
    if not out:
        raise _not_found(flow_id)
    return out


@router.get("/{flow_id}/versions", summary="Version numbers of a flow")
async def flow_versions(flow_id: str, request: Request, account: CurrentAccount):
    async with (await request.app.state.runtime.db()).acquire() as conn:
        out = await store.versions(conn, account.id, flow_id)
    if not out:
        raise _not_found(flow_id)
    return {"object": "list", "data": out}


@router.put("/{flow_id}", summary="Save a new version of a flow")
async def update_flow(flow_id: str, request: Request, account: CurrentAccount):
    doc = await _flow_body(request)
    async with (await request.app.state.runtime.db()).acquire() as conn:
        out = await store.update(conn, account.id, flow_id, doc)
    if not out:
        raise _not_found(flow_id)
    return out


@router.delete("/{flow_id}", status_code=204, summary="Delete a flow")
async def delete_flow(flow_id: str, request: Request, account: CurrentAccount):
    async with (await request.app.state.runtime.db()).acquire() as conn:
        ok = await store.delete(conn, account.id, flow_id)
    if not ok:
        raise _not_found(flow_id)
    return Response(status_code=204)
