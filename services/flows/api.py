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

`router` is built on first access (importing `services.api.auth.current_account` only
then); tests use `build_router(account_dep=...)`.
"""

from __future__ import annotations

from typing import Any, Callable

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from services.api.deps import account_id_of, default_account_dep, lazy_router, pool_of
from services.flows import store
from services.flows.validate import validate_flow

MAX_BODY = 512 * 1024


def _error(status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None,
           field: str | None = None) -> JSONResponse:
    """The API's one error shape {"error": {"code", "message", "field"}}, plus every flow error."""
    body: dict[str, Any] = {"code": code, "message": message, "field": field}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(status_code=status, content={"error": body})


def _not_found(flow_id: str) -> JSONResponse:
    return _error(404, "not_found", f"no flow {flow_id}")


async def _flow_body(request: Request) -> dict[str, Any] | JSONResponse:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return _error(413, "too_large", f"a flow may be at most {MAX_BODY} bytes")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _error(400, "malformed_json", f"body is not JSON: {exc}")
    errors = validate_flow(doc)
    if errors:
        first = errors[0]
        return _error(422, "invalid_flow", f"{first.field}: {first.message}", [e.to_dict() for e in errors],
                      field=first.field)
    return doc


def build_router(account_dep: Callable[..., Any] | None = None) -> APIRouter:
    r = APIRouter(prefix="/v1/voice/flows", tags=["flows"])
    dep = account_dep or default_account_dep()

    @r.post("", status_code=201, summary="Store a new flow (version 1)")
    async def create_flow(request: Request, account: Any = Depends(dep)):
        doc = await _flow_body(request)
        if isinstance(doc, JSONResponse):
            return doc
        async with (await pool_of(request)).acquire() as conn:
            out = await store.create(conn, account_id_of(account), doc)
        return JSONResponse(status_code=201, content=out, headers={"Location": f"/v1/voice/flows/{out['id']}"})

    @r.get("", summary="Latest version of every flow")
    async def list_flows(request: Request, limit: int = Query(100, ge=1, le=500), account: Any = Depends(dep)):
        async with (await pool_of(request)).acquire() as conn:
            rows = await store.list_flows(conn, account_id_of(account), limit)
        return {"object": "list", "data": rows}

    @r.get("/{flow_id}", summary="A flow: the latest version, or ?version=N")
    async def get_flow(flow_id: str, request: Request, version: int | None = Query(None, ge=1),
                       account: Any = Depends(dep)):
        async with (await pool_of(request)).acquire() as conn:
            out = await store.get(conn, account_id_of(account), flow_id, version)
        return out if out else _not_found(flow_id)

    @r.get("/{flow_id}/versions", summary="Version numbers of a flow")
    async def flow_versions(flow_id: str, request: Request, account: Any = Depends(dep)):
        async with (await pool_of(request)).acquire() as conn:
            out = await store.versions(conn, account_id_of(account), flow_id)
        return {"object": "list", "data": out} if out else _not_found(flow_id)

    @r.put("/{flow_id}", summary="Save a new version of a flow")
    async def update_flow(flow_id: str, request: Request, account: Any = Depends(dep)):
        doc = await _flow_body(request)
        if isinstance(doc, JSONResponse):
            return doc
        async with (await pool_of(request)).acquire() as conn:
            out = await store.update(conn, account_id_of(account), flow_id, doc)
        return out if out else _not_found(flow_id)

    @r.delete("/{flow_id}", status_code=204, summary="Delete a flow")
    async def delete_flow(flow_id: str, request: Request, account: Any = Depends(dep)):
        async with (await pool_of(request)).acquire() as conn:
            ok = await store.delete(conn, account_id_of(account), flow_id)
        return Response(status_code=204) if ok else _not_found(flow_id)

    return r


__getattr__ = lazy_router(build_router, globals())
