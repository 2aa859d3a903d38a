"""Typed errors. Every error the SDK raises is a :class:`CanaryError`."""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional, Type

__all__ = [
    "CanaryError",
    "APIError",
    "APIConnectionError",
    "APITimeoutError",
    "InvalidRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "WebhookVerificationError",
]


class CanaryError(Exception):
    """Base class of every SDK error.

    ``code`` is the API's machine-readable error code (e.g. ``"invalid_phone_number"``),
    ``field`` the request field it refers to (or ``None``), ``status`` the HTTP status
    (``None`` when no response was received).
    """

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        field: Optional[str] = None,
        status: Optional[int] = None,
        headers: Optional[Mapping[str, str]] = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        self.status = status
        self.headers: Dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}
        self.body = body

    @property
    def request_id(self) -> Optional[str]:
        return self.headers.get("x-request-id")

    def __str__(self) -> str:
        parts = []
        if self.status is not None:
            parts.append(str(self.status))
        if self.code:
            parts.append(self.code)
        prefix = " ".join(parts)
        text = f"{prefix}: {self.message}" if prefix else self.message
        if self.field:
            text += f" (field: {self.field})"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, code={self.code!r}, "
            f"field={self.field!r}, status={self.status!r})"
        )


class APIConnectionError(CanaryError):
    """The API could not be reached (DNS, refused connection, reset, ...)."""


class APITimeoutError(APIConnectionError):
    """The request timed out."""


class APIError(CanaryError):
    """The API answered with an error status."""


class InvalidRequestError(APIError):
    """400, 413, 415, 422: the request was rejected; see ``code`` and ``field``."""


class AuthenticationError(APIError):
    """401: missing or invalid API key."""


class PermissionDeniedError(APIError):
    """403: the key may not do this."""


class NotFoundError(APIError):
    """404: no such resource in your account."""


class ConflictError(APIError):
    """409: e.g. an Idempotency-Key reused with a different body."""


class RateLimitError(APIError):
    """429: too many requests; ``retry_after`` is the server's hint in seconds."""

    @property
    def retry_after(self) -> Optional[float]:
        from ._retry import parse_retry_after

        return parse_retry_after(self.headers.get("retry-after"))


class InternalServerError(APIError):
    """5xx other than 503."""


class ServiceUnavailableError(APIError):
    """503: the API could not accept the request right now (retry later)."""

    @property
    def retry_after(self) -> Optional[float]:
        from ._retry import parse_retry_after

        return parse_retry_after(self.headers.get("retry-after"))


class WebhookVerificationError(CanaryError):
    """A webhook's ``Canary-Signature`` header did not verify."""


_BY_STATUS: Dict[int, Type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidRequestError,
    415: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def _parse_error_body(status: int, text: str) -> tuple[str, Optional[str], Optional[str], Any]:
    """(message, code, field, body) from any of the error shapes an API may use."""
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = text or None
    message, code, field = None, None, None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):  # {"error": {"code", "message", "field"}}
            message, code, field = err.get("message"), err.get("code"), err.get("field")
        elif isinstance(err, str):
            message = err
        elif "title" in body or ("detail" in body and not isinstance(body.get("detail"), list)):
            # RFC 9457 problem+json
            message = body.get("detail") or body.get("title")
            code = body.get("code") or body.get("type")
            field = body.get("field")
        elif isinstance(body.get("detail"), list) and body["detail"]:
            # FastAPI's default validation error
            first = body["detail"][0]
            if isinstance(first, dict):
                message = first.get("msg")
                code = first.get("type")
                loc = [str(p) for p in first.get("loc", []) if p not in ("body", "query", "path")]
                field = ".".join(loc) or None
    elif isinstance(body, str):
        message = body[:500]
    if not message:
        message = f"HTTP {status}"
    return str(message), code, field, body


def error_from_response(status: int, headers: Mapping[str, str], text: str) -> APIError:
    message, code, field, body = _parse_error_body(status, text)
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = InternalServerError if status >= 500 else InvalidRequestError if status >= 400 else APIError
    return cls(message, code=code, field=field, status=status, headers=headers, body=body)
