"""Signed, expiring recording download URLs (HMAC-SHA256 with settings().url_signing_secret).

``CANARY_URL_SECRET`` is a list "new,old,...": links are signed with the first key and
verified with any, so a rolling change of the secret keeps the links already handed out
working until they expire. A link never lives longer than MAX_TTL: an ``expires`` further
ahead is refused even with a valid signature.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from services.common.config import settings
from services.common.signing import secret_list

DEFAULT_TTL = 3600
MAX_TTL = 7 * 86400  # seconds: no link we hand out lives longer


def _keys() -> list[str]:
    return secret_list(settings().url_signing_secret)


def signature(rec_id: str, fmt: str, expires: int, secret: str | None = None) -> str:
    key = (secret or _keys()[0]).encode()
    return hmac.new(key, f"{rec_id}:{fmt}:{expires}".encode(), hashlib.sha256).hexdigest()


def media_url(rec_id: str, fmt: str, ttl: int = DEFAULT_TTL, base: str | None = None) -> str:
    expires = int(time.time()) + min(ttl, MAX_TTL)
    q = urlencode({"format": fmt, "expires": expires, "signature": signature(rec_id, fmt, expires)})
    return f"{(base or settings().public_url).rstrip('/')}/v1/voice/recordings/{rec_id}/media?{q}"


def verify(rec_id: str, fmt: str, expires: int, sig: str) -> bool:
    """True for an unexpired URL signed by us (with any current key); any malformed signature,
    or an expiry further ahead than MAX_TTL, is simply False."""
    now = time.time()
    if expires < now or expires > now + MAX_TTL + 60:
        return False
    # compare bytes: compare_digest raises TypeError on non-ASCII str, which a client controls
    given = (sig or "").encode("utf-8", "replace")
    ok = False
    for key in _keys():  # every key, no early exit: the time does not tell which one matched
        ok |= hmac.compare_digest(signature(rec_id, fmt, expires, key).encode(), given)
    return ok
