"""Webhook signature verification.

Every webhook Canary sends carries ``Canary-Signature: t=<unix seconds>,v1=<hex>``, where
``<hex>`` is the HMAC-SHA256, keyed with your webhook secret, of ``"<t>.<raw body>"``.
During a secret rotation the header may carry several ``v1=`` values; one match is enough.

    event = canary.webhooks.verify(request.body, request.headers["Canary-Signature"], secret)

Pass the raw body exactly as received (bytes or str), not re-serialized JSON.

Anything wrong with the header (missing, not text, longer than ``MAX_HEADER_LENGTH``
characters, no timestamp, a timestamp that is not 1-12 ASCII digits, no non-empty
``v1``, no ``v1`` that matches, non-ASCII included) raises
:class:`~canary.WebhookVerificationError`, never another exception. So does a
``tolerance`` that is not a finite number of seconds >= 0 (NaN, infinity, negative,
a string, a bool: code ``tolerance_invalid``), so a misconfigured tolerance refuses
every webhook instead of switching the replay check off; ``tolerance=None`` is the only
way to skip the age check.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from typing import Any, List, Optional, Tuple, Union

from ._errors import WebhookVerificationError

__all__ = ["verify", "sign", "generate_header", "SIGNATURE_HEADER", "DEFAULT_TOLERANCE", "MAX_HEADER_LENGTH"]

SIGNATURE_HEADER = "Canary-Signature"
DEFAULT_TOLERANCE = 300  # seconds
MAX_HEADER_LENGTH = 8192  # characters; a real header is ~80, ~70 more per extra v1 signature

_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only (int() would take "+1", "1_0", "١")

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


def _parse_header(header: Any) -> Tuple[int, List[str]]:
    if isinstance(header, (bytes, bytearray)):  # a raw header, as ASGI servers hand it over
        header = bytes(header).decode("latin-1")
    if not isinstance(header, str) or not header.strip():
        raise WebhookVerificationError("missing Canary-Signature header", code="signature_missing")
    if len(header) > MAX_HEADER_LENGTH:
        raise WebhookVerificationError("Canary-Signature header too long", code="signature_malformed")
    timestamp: Optional[int] = None
    signatures: List[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "t":
            if not _TIMESTAMP.fullmatch(value):
                raise WebhookVerificationError(
                    "malformed timestamp in Canary-Signature header", code="signature_malformed"
                )
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None:
        raise WebhookVerificationError("no timestamp in Canary-Signature header", code="signature_malformed")
    if not signatures:
        raise WebhookVerificationError("no v1 signature in Canary-Signature header", code="signature_malformed")
    return timestamp, signatures


def _matches(expected: str, candidate: str) -> bool:
    # compare_digest raises TypeError on non-ASCII str; such a value cannot match anyway.
    return candidate.isascii() and hmac.compare_digest(expected, candidate)


def _check_tolerance(tolerance: Any) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) \
            or not math.isfinite(tolerance) or tolerance < 0:
        raise WebhookVerificationError(
            f"tolerance must be a finite number of seconds >= 0 (or None to skip the age check), "
            f"not {tolerance!r}", code="tolerance_invalid")
    return tolerance


def _check_now(now: Any) -> float:
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
        raise WebhookVerificationError(f"now must be finite unix seconds, not {now!r}", code="now_invalid")
    return now


def verify(
    payload: Payload,
    header: Union[str, bytes],
    secret: str,
    tolerance: Optional[float] = DEFAULT_TOLERANCE,
    *,
    now: Optional[float] = None,
) -> Any:
    """Check a webhook's signature and return its parsed JSON body.

    Raises :class:`~canary.WebhookVerificationError` when the header is missing or
    malformed, no signature matches, or the timestamp is more than ``tolerance`` seconds
    away from now (replay protection; ``tolerance=None`` disables that check). A
    ``tolerance`` that is not a finite number >= 0 (NaN, infinity, negative) raises it
    too (code ``tolerance_invalid``), whatever the header, rather than accept anything.
    """
    if tolerance is not None:
        tolerance = _check_tolerance(tolerance)
    if now is not None:
        now = _check_now(now)
    if not secret:
        raise WebhookVerificationError("missing webhook secret", code="secret_missing")
    body = _as_bytes(payload)
    timestamp, signatures = _parse_header(header)
    expected = sign(body, secret, timestamp)
    if not any(_matches(expected, s) for s in signatures):
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
        header: Union[str, bytes],
        secret: str,
        tolerance: Optional[float] = DEFAULT_TOLERANCE,
        *,
        now: Optional[float] = None,
    ) -> Any:
        return verify(payload, header, secret, tolerance, now=now)

    @staticmethod
    def generate_header(payload: Payload, secret: str, timestamp: Optional[int] = None) -> str:
        return generate_header(payload, secret, timestamp)
