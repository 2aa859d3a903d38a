"""One error shape everywhere: ``{"error": {"code", "message", "field"}}``.

Every router raises :class:`ApiError`; the handlers installed here build every error
response (a refused flow adds ``errors``: each problem, with where it is).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from services.common.logging import get_logger

log = get_logger(service="api")

_STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    406: "not_acceptable", 409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
    422: "invalid_request", 429: "rate_limited", 500: "internal_error", 503: "service_unavailable",
}


class ApiError(Exception):
    """Raise anywhere in a handler; becomes the standard error response."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}
        self.errors = errors


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(obj), status_code=status, media_type="application/json", headers=headers)


def error_body(code: str, message: str, field: str | None = None,
               errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "field": field}
    if errors is not None:
        body["errors"] = errors
    return {"error": body}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None, errors: list[dict[str, Any]] | None = None) -> Response:
    return json_response(error_body(code, message, field, errors), status, headers)


def unavailable(what: str, retry_after: int = 1) -> ApiError:
    return ApiError(503, f"{what}_unavailable", f"{what} is unreachable; nothing was accepted, retry later",
                    headers={"Retry-After": str(retry_after)})


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers, exc.errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _STATUS_CODES.get(exc.status_code, "error")
        msg = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404 and msg == "Not Found":
            msg = f"no route {request.method} {request.url.path}"
        return error_response(exc.status_code, code, msg, None, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = [str(p) for p in first.get("loc", ())]
        where = loc[0] if loc else ""
        field = ".".join(loc[1:]) or None
        msg = str(first.get("msg", "invalid request"))
        if where == "body":
            return error_response(400, "invalid_json", msg, field)
        return error_response(422, "invalid_parameter", f"{where} parameter {field}: {msg}", field)

    async def _pg_conn(request: Request, exc: Exception) -> Response:
        log.warning("database_unreachable", error=repr(exc))
        return error_response(503, "database_unavailable", "the database is unreachable; retry later",
                              headers={"Retry-After": "1"})

    for cls in (asyncpg.PostgresConnectionError, asyncpg.ConnectionDoesNotExistError,
                asyncpg.InterfaceError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError,
                TimeoutError):
        app.add_exception_handler(cls, _pg_conn)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: Exception) -> Response:  # connection refused, timeouts
        log.warning("dependency_unreachable", error=repr(exc))
        return error_response(503, "service_unavailable", "a dependency is unreachable; retry later",
                              headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled_error", path=request.url.path, error=repr(exc), exc_info=exc)
        return error_response(500, "internal_error", "internal error")
