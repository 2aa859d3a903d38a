"""Signed, expiring recording download URLs (HMAC-SHA256 with settings().url_signing_secret)."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from services.common.config import settings

DEFAULT_TTL = 3600


def signature(rec_id: str, fmt: str, expires: int, secret: str | None = None) -> str:
    key = (secret or settings().url_signing_secret).encode()
    return hmac.new(key, f"{rec_id}:{fmt}:{expires}".encode(), hashlib.sha256).hexdigest()


def media_url(rec_id: str, fmt: str, ttl: int = DEFAULT_TTL, base: str | None = None) -> str:
    expires = int(time.time()) + ttl
    q = urlencode({"format": fmt, "expires": expires, "signature": signature(rec_id, fmt, expires)})
    return f"{(base or settings().public_url).rstrip('/')}/v1/voice/recordings/{rec_id}/media?{q}"


def verify(rec_id: str, fmt: str, expires: int, sig: str) -> bool:
    """True for an unexpired URL signed by us; any malformed signature is simply False."""
    if expires < time.time():
        return False
    # compare bytes: compare_digest raises TypeError on non-ASCII str, which a client controls
    return hmac.compare_digest(signature(rec_id, fmt, expires).encode(), (sig or "").encode("utf-8", "replace"))
