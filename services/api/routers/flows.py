"""/v1/voice/flows: stored, versioned IVR flows, validated on save.

    POST   /v1/voice/flows                 body: a flow document -> 201, version 1
    GET    /v1/voice/flows                 latest version of each live flow
    GET    /v1/voice/flows/{id}[?version=] latest (or an older) version
    GET    /v1/voice/flows/{id}/versions   the version numbers
    PUT    /v1/voice/flows/{id}            body: a flow document -> the next version
    DELETE /v1/voice/flows/{id}            204; versions are kept for calls that ran them

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
from services.lib.flows.validate import validate_flow

MAX_BODY = 512 * 1024

router = APIRouter(prefix="/v1/voice/flows", tags=["flows"])
CurrentAccount = Annotated[Account, Depends(current_account)]


def _not_found(flow_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no flow {flow_id}")


async def _flow_body(request: Request) -> dict[str, Any]:
    raw = await read_body(request, MAX_BODY)  # streamed, 413 at the first byte over (never buffered whole)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"body is not JSON: {exc}") from None
    refuse_nul(doc)
    errors = validate_flow(doc)
    if errors:
        first = errors[0]
        raise ApiError(422, "invalid_flow", f"{first.field}: {first.message}", first.field,
                       errors=[e.to_dict() for e in errors])
    return doc


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
