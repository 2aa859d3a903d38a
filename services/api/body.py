"""Request body reading: content type (415), size (413), JSON (400).

Every route that takes a body reads it through here, never with ``request.body()`` or
``request.json()`` (which buffer all of it before anyone can look at its size): a
declared Content-Length over the limit is refused before a byte is read, and a chunked
body is read as it streams in and refused at the first chunk over the limit, so a
request holds at most ``max_bytes`` (plus one chunk) in memory, whatever it sends.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from services.common.text import nul_path
from services.api.errors import ApiError


def _is_json(content_type: str) -> bool:
    mt = content_type.split(";", 1)[0].strip().lower()
    return mt == "application/json" or (mt.startswith("application/") and mt.endswith("+json"))


def _too_large(max_bytes: int) -> ApiError:
    # No `Connection: close`: a server closing on unread data resets the connection, and the
    # client never sees this answer. uvicorn discards the rest of the body instead.
    return ApiError(413, "payload_too_large", f"body larger than {max_bytes} bytes")


def _declared_length(request: Request, max_bytes: int) -> int | None:
    length = request.headers.get("content-length")
    if length is None:
        return None
    try:
        n = int(length)
    except ValueError:
        raise ApiError(400, "bad_request", "invalid Content-Length") from None
    if n > max_bytes:
        raise _too_large(max_bytes)
    return n


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, at most ``max_bytes`` (413 beyond: see the module docstring)."""
    _declared_length(request, max_bytes)
    return await _read(request, max_bytes)


async def read_json(request: Request, max_bytes: int, *, optional: bool = False) -> Any:
    """The parsed JSON body, or an ApiError with the right status."""
    n = _declared_length(request, max_bytes)
    if n == 0 and optional:
        return None
    ctype = request.headers.get("content-type")
    if ctype is None and optional:
        raw = await _read(request, max_bytes)
        if not raw.strip():
            return None
        ctype = ""
    if not _is_json(ctype or ""):
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
    raw = await _read(request, max_bytes)
    if not raw.strip():
        if optional:
            return None
        raise ApiError(400, "invalid_json", "request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    refuse_nul(body)
    return body


def refuse_nul(body: Any) -> None:
    """422 ``invalid_character`` naming the field, for a parsed body holding U+0000 anywhere
    (Postgres could not store it: services/common/text.py)."""
    if (where := nul_path(body)) is not None:
        raise ApiError(422, "invalid_character", "strings must not contain NUL (U+0000)", where or None)



async def read_object(request: Request, max_bytes: int, allowed: set[str]) -> dict[str, Any]:
    """The JSON object body, or a 422 when it is not an object or has a field not in ``allowed``."""
    body = await read_json(request, max_bytes)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", "the request body must be a JSON object")
    extra = sorted(set(body) - allowed)
    if extra:
        raise ApiError(422, "unknown_field", f"unknown field {extra[0]!r}", str(extra[0])[:100])
    return body

async def _read(request: Request, max_bytes: int) -> bytes:
    if hasattr(request, "_body"):
        return request._body
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:  # stop here: the rest is never held in memory
            raise _too_large(max_bytes)
        chunks.append(chunk)
    request._body = b"".join(chunks)
    return request._body
