"""Webhook signatures: `Canary-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`.

Pure functions, shared by the webhook sender and by anyone receiving webhooks (the
SDKs carry a copy of `verify`). The timestamp is inside the signed text, so a
captured request cannot be replayed later with a fresh `t`; receivers reject
signatures older than `tolerance` seconds.

    >>> header = sign("whsec_test", b'{"a":1}', timestamp=1700000000)
    >>> header.startswith("t=1700000000,v1=")
    True
    >>> verify("whsec_test", b'{"a":1}', header, now=1700000010)
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Canary-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300  # seconds; Stripe and Svix use five minutes too


class SignatureError(ValueError):
    """The signature header is missing, malformed, stale or does not match."""


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def compute(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """Hex HMAC-SHA256 of f"{timestamp}.{body}"."""
    return hmac.new(_key(secret), str(int(timestamp)).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The `Canary-Signature` header value for `body` at `timestamp` (default: now)."""
    t = int(time.time() if timestamp is None else timestamp)
    return f"t={t},{SCHEME}={compute(secret, body, t)}"


def parse(header: str) -> tuple[int, list[str]]:
    """(timestamp, [v1 signatures]) from a header; several v1 entries allow secret rotation."""
    t: int | None = None
    sigs: list[str] = []
    for part in (header or "").split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                t = int(value)
            except ValueError:
                raise SignatureError("timestamp is not an integer") from None
        elif key == SCHEME:
            sigs.append(value.strip())
    if t is None:
        raise SignatureError("no timestamp in signature header")
    if not sigs:
        raise SignatureError(f"no {SCHEME} signature in signature header")
    return t, sigs


def verify(secret: str | bytes, body: bytes, header: str, *, tolerance: int | None = DEFAULT_TOLERANCE,
           now: float | None = None) -> None:
    """Raise SignatureError unless `header` signs `body` with `secret` within `tolerance` seconds.

    `body` must be the raw request bytes, not re-serialised JSON. `tolerance=None`
    skips the age check (for replaying stored requests in tests).
    """
    t, sigs = parse(header)
    expected = compute(secret, body, t)
    if not any(hmac.compare_digest(expected, s) for s in sigs):
        raise SignatureError("signature does not match")
    if tolerance is not None:
        age = (time.time() if now is None else now) - t
        if abs(age) > tolerance:
            raise SignatureError(f"timestamp outside the tolerance ({int(age)} s)")


def is_valid(secret: str | bytes, body: bytes, header: str, **kw) -> bool:
    """`verify` as a boolean."""
    try:
        verify(secret, body, header, **kw)
    except SignatureError:
        return False
    return True
