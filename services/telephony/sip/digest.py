"""HTTP Digest authentication for SIP (RFC 3261 22.4, RFC 2617, RFC 8760 algorithms).

Only the client side: answer a 401 WWW-Authenticate or 407 Proxy-Authenticate
challenge. qop=auth is preferred when offered; auth-int is not implemented (trunks
practically never demand it), so a challenge offering only auth-int is refused.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

_HASHES = {
    "MD5": hashlib.md5,
    "MD5-SESS": hashlib.md5,
    "SHA-256": hashlib.sha256,
    "SHA-256-SESS": hashlib.sha256,
}


class DigestError(ValueError):
    """The challenge cannot be answered."""


@dataclass(frozen=True, slots=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def parse_challenge(value: str) -> Challenge:
    """Parse a ``Digest realm="...", nonce="...", ...`` challenge header value."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"unsupported auth scheme {scheme!r}")
    params = _parse_auth_params(rest)
    if "nonce" not in params:
        raise DigestError("challenge without nonce")
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    return Challenge(
        realm=params.get("realm", ""),
        nonce=params["nonce"],
        algorithm=params.get("algorithm", "MD5").upper(),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )


def _parse_auth_params(text: str) -> dict[str, str]:
    """Parse comma-separated ``k=v`` / ``k="quoted, value"`` pairs."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " ,\t":
            i += 1
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq].strip().lower()
        i = eq + 1
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == '"':
            j = i + 1
            buf = []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            out[key] = "".join(buf)
            i = j + 1
        else:
            j = text.find(",", i)
            j = n if j < 0 else j
            out[key] = text[i:j].strip()
            i = j
    return out


def digest_response(
    ch: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int,
) -> str:
    """Compute the ``response`` value (pure function: unit-tested against RFC vectors)."""
    hfn = _HASHES.get(ch.algorithm)
    if hfn is None:
        raise DigestError(f"unsupported algorithm {ch.algorithm}")

    def h(s: str) -> str:
        return hfn(s.encode("utf-8")).hexdigest()

    ha1 = h(f"{username}:{ch.realm}:{password}")
    if ch.algorithm.endswith("-SESS"):
        ha1 = h(f"{ha1}:{ch.nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    if "auth" in ch.qop:
        return h(f"{ha1}:{ch.nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
    if ch.qop:
        raise DigestError("only qop=auth is supported")
    return h(f"{ha1}:{ch.nonce}:{ha2}")


def authorization(
    ch: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """Build the Authorization / Proxy-Authorization header value for a request."""
    cnonce = cnonce or os.urandom(8).hex()
    resp = digest_response(
        ch, method=method, uri=uri, username=username, password=password, cnonce=cnonce, nc=nc
    )
    parts = [
        f'username="{username}"',
        f'realm="{ch.realm}"',
        f'nonce="{ch.nonce}"',
        f'uri="{uri}"',
        f'response="{resp}"',
        f"algorithm={ch.algorithm}",
    ]
    if "auth" in ch.qop:
        parts += ["qop=auth", f'cnonce="{cnonce}"', f"nc={nc:08x}"]
    if ch.opaque is not None:
        parts.append(f'opaque="{ch.opaque}"')
    return "Digest " + ", ".join(parts)
