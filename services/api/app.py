"""The FastAPI application: routers, error handlers, OpenAPI 3.1 at /openapi.json, docs at /docs."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.api import console, errors, models
from services.api.metrics_middleware import RequestMetrics
from services.api.trace_middleware import RequestTrace
from services.api.routers import (calls, flows, keys, meta, numbers, recordings, sandbox, streams, trunks, voices,
                                  webhooks)
from services.api.runtime import Runtime

API_VERSION = "1.0.0"
ROUTERS = (calls.router, numbers.router, voices.router, recordings.router, meta.router, trunks.router,
           sandbox.router, webhooks.router, flows.router, streams.router, keys.router)
# Schemas of hand-parsed request bodies (referenced from openapi_extra).
BODY_MODELS = (models.CallCreate, models.CallUpdate, models.NumberCreate, models.NumberVerify,
               models.NumberRouteUpdate, models.SandboxCallIn)

DESCRIPTION = """Programmable voice: place outbound calls that speak text (TTS) or play audio, gather
DTMF or speech, record and transcribe. `POST /v1/voice/calls` returns at once (`status: queued`);
the call is placed asynchronously and reported through webhooks and the event stream.

Authenticate with `Authorization: Bearer sk_test_...` (sandbox carrier) or `sk_live_...` (SIP trunk).
Every error has the shape `{"error": {"code", "message", "field"}}`."""


def build_openapi(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(title=app.title, version=app.version, openapi_version="3.1.0",
                      description=app.description, routes=app.routes,
                      servers=[{"url": "http://127.0.0.1:8080", "description": "local (make run)"}])
    comps = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in BODY_MODELS:
        s = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        for name, sub in s.pop("$defs", {}).items():
            comps.setdefault(name, sub)
        comps[model.__name__] = s
    # FastAPI documents parameter errors as HTTPValidationError; ours use the one error shape.
    limited = {"description": "rate limited (see Retry-After)", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    for path in doc.get("paths", {}).values():
        for op in path.values():
            # Every authenticated operation draws on a budget (services/api/auth.py).
            if "401" in op.get("responses", {}):
                op["responses"].setdefault("429", limited)
            resp = op.get("responses", {}).get("422")
            if resp and "HTTPValidationError" in str(resp):
                op["responses"]["422"] = {"description": "invalid parameter", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    if "HTTPValidationError" not in str(doc.get("paths")):
        comps.pop("HTTPValidationError", None)
        comps.pop("ValidationError", None)
    return doc


def create_app(runtime: Runtime | None = None) -> FastAPI:
    rt = runtime or Runtime()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await rt.start()
        try:
            yield
        finally:
            await rt.stop()

    app = FastAPI(title="Canary Voice API", version=API_VERSION, description=DESCRIPTION,
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None, lifespan=lifespan)
    app.state.runtime = rt
    app.add_middleware(RequestMetrics)
    app.add_middleware(RequestTrace)  # outermost: the trace covers the whole request
    errors.install(app)
    for r in ROUTERS:
        app.include_router(r)
    console.install(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
