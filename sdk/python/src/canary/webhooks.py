"""Webhook signature verification.

Every webhook Canary sends carries ``Canary-Signature: t=<unix seconds>,v1=<hex>``, where
``<hex>`` is the HMAC-SHA256, keyed with your webhook secret, of ``"<t>.<raw body>"``.
During a secret rotation the header may carry several ``v1=`` values; one match is enough.

    event = canary.webhooks.verify(request.body, request.headers["Canary-Signature"], secret)

Pass the raw body exactly as received (bytes or str), not re-serialized JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, List, Optional, Tuple, Union

from ._errors import WebhookVerificationError

__all__ = ["verify", "sign", "generate_header", "SIGNATURE_HEADER", "DEFAULT_TOLERANCE"]

SIGNATURE_HEADER = "Canary-Signature"
DEFAULT_TOLERANCE = 300  # seconds

Payload = Union[str, bytes, bytearray]


def _as_bytes(value: Payload) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError("payload must be the raw request body (bytes or str)")


def sign(payload: Payload, secret: str, timestamp: int) -> str:
    """The hex ``v1`` signature of ``payload`` at ``timestamp``."""
    message = str(int(timestamp)).encode() + b"." + _as_bytes(payload)
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def generate_header(payload: Payload, secret: str, timestamp: Optional[int] = None) -> str:
    """A ``Canary-Signature`` header value (useful to test your webhook handler)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={sign(payload, secret, t)}"


def _parse_header(header: str) -> Tuple[int, List[str]]:
    if not isinstance(header, str) or not header.strip():
        raise WebhookVerificationError("missing Canary-Signature header", code="signature_missing")
    timestamp: Optional[int] = None
    signatures: List[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookVerificationError(
                    "malformed timestamp in Canary-Signature header", code="signature_malformed"
                ) from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None:
        raise WebhookVerificationError("no timestamp in Canary-Signature header", code="signature_malformed")
    if not signatures:
        raise WebhookVerificationError("no v1 signature in Canary-Signature header", code="signature_malformed")
    return timestamp, signatures


def verify(
    payload: Payload,
    header: str,
    secret: str,
    tolerance: Optional[int] = DEFAULT_TOLERANCE,
    *,
    now: Optional[float] = None,
) -> Any:
    """Check a webhook's signature and return its parsed JSON body.

    Raises :class:`~canary.WebhookVerificationError` when the header is missing or
    malformed, no signature matches, or the timestamp is more than ``tolerance`` seconds
    away from now (replay protection; ``tolerance=None`` disables that check).
    """
    if not secret:
        raise WebhookVerificationError("missing webhook secret", code="secret_missing")
    body = _as_bytes(payload)
    timestamp, signatures = _parse_header(header)
    expected = sign(body, secret, timestamp)
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise WebhookVerificationError(
            "no signature matches the payload", code="signature_mismatch"
        )
    if tolerance is not None:
        current = time.time() if now is None else now
        if abs(current - timestamp) > tolerance:
            raise WebhookVerificationError(
                "timestamp outside the tolerance window", code="timestamp_out_of_tolerance"
            )
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")


class Webhooks:
    """``canary.webhooks`` on a client: the same functions, for convenience."""

    SIGNATURE_HEADER = SIGNATURE_HEADER

    @staticmethod
    def verify(
        payload: Payload,
        header: str,
        secret: str,
        tolerance: Optional[int] = DEFAULT_TOLERANCE,
        *,
        now: Optional[float] = None,
    ) -> Any:
        return verify(payload, header, secret, tolerance, now=now)

    @staticmethod
    def generate_header(payload: Payload, secret: str, timestamp: Optional[int] = None) -> str:
        return generate_header(payload, secret, timestamp)
