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
import math
import re
import time

HEADER = "Canary-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300  # seconds; Stripe and Svix use five minutes too
MAX_HEADER_LENGTH = 8192  # characters, as in the SDKs (sdk/testdata/webhook_signatures.json)
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only, as the SDKs read it


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
    if header is not None and not isinstance(header, str):
        raise SignatureError("signature header is not text")
    if len(header or "") > MAX_HEADER_LENGTH:
        raise SignatureError("signature header too long")
    t: int | None = None
    sigs: list[str] = []
    for part in (header or "").split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            if not _TIMESTAMP.fullmatch(value.strip()):
                raise SignatureError("timestamp is not an integer")
            t = int(value)
        elif key == SCHEME and value.strip():
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
    # NaN / infinite / negative would switch the age check off (or make it meaningless).
    if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))
                                  or not math.isfinite(tolerance) or tolerance < 0):
        raise SignatureError(f"tolerance must be a finite number of seconds >= 0, not {tolerance!r}")
    if now is not None and (isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now)):
        raise SignatureError(f"now must be finite unix seconds, not {now!r}")
    t, sigs = parse(header)
    expected = compute(secret, body, t)
    # compare_digest raises TypeError on non-ASCII text, which cannot match anyway.
    if not any(s.isascii() and hmac.compare_digest(expected, s) for s in sigs):
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


# --- the service-wide secrets (CANARY_URL_SECRET, CANARY_TRUNK_SECRET) -----------------------
#
# Each holds a comma-separated list "new,old,...": the first key signs (or seals), any key
# verifies (or unseals), so a rolling deploy can add a key everywhere first, then drop the
# old one. The embedded default is for `canary-voice run` and the tests only.

DEV_SECRET = "dev-only-change-me"
MIN_SECRET_LENGTH = 16  # characters; generate 32+ random bytes (e.g. `openssl rand -hex 32`)
SERVICE_SECRETS = (("CANARY_URL_SECRET", "url_signing_secret"), ("CANARY_TRUNK_SECRET", "trunk_secret"))


class InsecureSecretError(RuntimeError):
    """A service-wide secret that must not be used outside development (the message names it)."""


def secret_list(raw: str | None) -> list[str]:
    """The keys of a "new,old,..." secret, in order (spaces around commas ignored); never empty:
    an empty value means the development default (which production refuses)."""
    keys = [k.strip() for k in (raw or "").split(",") if k.strip()]
    return keys or [DEV_SECRET]


def secret_problem(env: str, raw: str | None) -> str | None:
    """Why the value of ``env`` is unfit for production, or None."""
    keys = [k.strip() for k in (raw or "").split(",") if k.strip()]
    if not keys:
        return f"{env} is not set"
    if DEV_SECRET in keys:
        return f"{env} holds the development default {DEV_SECRET!r}"
    if any(len(k) < MIN_SECRET_LENGTH for k in keys):
        return f"{env} has a key shorter than {MIN_SECRET_LENGTH} characters"
    return None


def check_service_secrets(s=None, only: tuple[str, ...] | None = None) -> None:
    """Raise InsecureSecretError unless every service-wide secret (or those named in ``only``)
    is fit for production; in development (CANARY_ENV=development) anything goes."""
    if s is None:
        from services.common.config import settings

        s = settings()
    if s.environment == "development":
        return
    problems = [p for env, attr in SERVICE_SECRETS if only is None or env in only
                if (p := secret_problem(env, getattr(s, attr))) is not None]
    if problems:
        raise InsecureSecretError(
            "; ".join(problems) + ". Set each to a comma-separated list of random keys (32+ random bytes each, the"
            " first signs, any verifies) from the deployment's secret store, or CANARY_ENV=development for a"
            " development machine")
