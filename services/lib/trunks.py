"""Per-account telephony settings: SIP trunks (migration 0006) and sandbox scripted
callees (migration 0005), shared by the CLI, the HTTP API and the gateway (which
dials with them: services/telephony/trunks.py).

Trunk passwords are sealed before they reach Postgres (encrypt-then-MAC, standard
library only: HMAC-SHA256 in counter mode as the keystream, HMAC-SHA256 tag) with a key
derived from ``CANARY_TRUNK_SECRET``, a list "new,old,...": the first key seals, the
key id in each sealed blob picks the key that opens it, so passwords sealed before a
rotation keep working. Outside development a default secret is refused. Only the
gateway unseals them, to answer a digest challenge. Nothing here logs or returns a password: views carry ``has_password``.

A trunk host is where our gateway sends SIP (and the digest answer to the trunk's
password), so it obeys the SSRF rules of customer URLs (services/common/ssrf.py): a
loopback, private, link-local, CGNAT, multicast or reserved address is refused when the
trunk is set (IP literals, ``localhost``) and again when a call dials (names, resolved
then: services/telephony/trunks.py); ``CANARY_ALLOW_PRIVATE_URLS=1`` is the development
override. A trunk whose host changes needs its password again: a stored password is
never sent to a host it was not given for.

Every function takes ``db``: an asyncpg Connection or Pool.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
from typing import Any

from events.catalog import e164
from services.common.config import settings
from services.common.signing import InsecureSecretError, check_service_secrets, secret_list
from services.common.ssrf import is_forbidden_ip, private_urls_allowed

NO_TRUNK = "no SIP trunk configured for this account"
TRANSPORTS = ("udp", "tcp", "tls")  # chosen per trunk (services/telephony/sip/stream.py for tcp/tls)
SRTP_MODES = ("off", "optional", "required")  # services/telephony/sip/srtp.py
KEEP = object()  # "leave the stored password as it is"

_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_PREFIX_RE = re.compile(r"^\+[0-9]{0,15}$")
_CTRL_RE = re.compile(r"[\x00-\x1f\x7f]")
DTMF_KEYS = set("0123456789*#ABCD")


class TrunkError(Exception):
    """Refused input or state (code is machine readable, field names the input)."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


# --- sealing --------------------------------------------------------------------------

_SEAL_VERSION = b"\x01"


def _keys(secret: str | None = None) -> tuple[bytes, bytes, bytes]:
    """(encryption key, MAC key, 4-byte key id) derived from one key (default: the first of
    the service secret's list, the one that seals)."""
    root = hashlib.sha256(b"canary-trunk-secret\x00" + (secret or _secrets()[0]).encode()).digest()
    enc = hmac.new(root, b"enc", hashlib.sha256).digest()
    mac = hmac.new(root, b"mac", hashlib.sha256).digest()
    return enc, mac, hmac.new(root, b"kid", hashlib.sha256).digest()[:4]


def _secrets() -> list[str]:
    """The keys of CANARY_TRUNK_SECRET ("new,old,..."); refused outside development while
    one is the default: a password sealed with a published key is not sealed."""
    try:
        check_service_secrets(only=("CANARY_TRUNK_SECRET",))
    except InsecureSecretError as exc:
        raise TrunkError("secret_insecure", f"trunk passwords cannot be sealed or unsealed: {exc}") from None
    return secret_list(settings().trunk_secret)


def _keystream(key: bytes, nonce: bytes, n: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hmac.new(key, nonce + counter.to_bytes(8, "big"), hashlib.sha256).digest()
        counter += 1
    return bytes(out[:n])


def seal(plaintext: str, secret: str | None = None) -> bytes:
    """version | key id | nonce(16) | ciphertext | tag(32)."""
    enc, mac, kid = _keys(secret)
    nonce = secrets.token_bytes(16)
    data = plaintext.encode()
    ct = bytes(a ^ b for a, b in zip(data, _keystream(enc, nonce, len(data))))
    head = _SEAL_VERSION + kid + nonce
    return head + ct + hmac.new(mac, head + ct, hashlib.sha256).digest()


def unseal(blob: bytes, secret: str | None = None) -> str:
    """The password of a sealed blob, with whichever key of the service secret sealed it
    (the key id in the blob says which), so passwords sealed before a rotation still open."""
    blob = bytes(blob)
    if len(blob) < 1 + 4 + 16 + 32 or blob[:1] != _SEAL_VERSION:
        raise TrunkError("secret_unreadable", "stored trunk password is not in a known format")
    for key in ([secret] if secret else _secrets()):
        enc, mac, kid = _keys(key)
        if blob[1:5] == kid:
            break
    else:
        raise TrunkError("secret_unreadable", "stored trunk password was sealed with another CANARY_TRUNK_SECRET")
    head, ct, tag = blob[:21], blob[21:-32], blob[-32:]
    if not hmac.compare_digest(tag, hmac.new(mac, head + ct, hashlib.sha256).digest()):
        raise TrunkError("secret_unreadable", "stored trunk password failed its integrity check")
    return bytes(a ^ b for a, b in zip(ct, _keystream(enc, blob[5:21], len(ct)))).decode()


# --- validation -----------------------------------------------------------------------

def valid_host(host: Any) -> str:
    if not isinstance(host, str) or not host.strip():
        raise TrunkError("invalid_host", "host is required (a hostname or IP address)", "host")
    host = host.strip()
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(literal))
    except ValueError:
        pass
    if not _HOST_RE.match(host) or host.replace(".", "").isdigit():
        raise TrunkError("invalid_host", f"host {host[:64]!r} is not a hostname or IP address", "host")
    return host.rstrip(".").lower()


def check_host_allowed(host: str) -> str:
    """``host`` (as :func:`valid_host` returns it) if our SSRF rules let us send SIP to it.

    IP literals are judged like a URL's (services/common/ssrf.py), and so are the forms
    that are IP literals to the resolver without looking like one (``0x7f.1``, ``127.1``);
    ``localhost`` and ``*.localhost`` are loopback by definition (RFC 6761). Other names
    are judged at dial time, on what they resolve to then.
    """
    if private_urls_allowed():
        return host
    try:
        addr: Any = ipaddress.ip_address(host)
    except ValueError:
        addr = None
        if host == "localhost" or host.endswith(".localhost"):
            raise TrunkError("host_not_allowed", f"host {host[:64]!r} is a loopback name", "host")
        try:  # the resolver reads 0x7f.1 or 127.1 as an IPv4 address
            addr = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return host
    if is_forbidden_ip(addr):
        raise TrunkError("host_not_allowed", f"host {host[:64]!r} is not a public address (loopback, private,"
                         " link-local, shared, multicast or reserved)", "host")
    return host


def valid_port(port: Any) -> int | None:
    """The port as an integer 1-65535; None (no port) means the servers are located by DNS
    (RFC 3263), or the transport's default port for an IP address."""
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, (int, str)):
        raise TrunkError("invalid_port", "port must be an integer 1-65535", "port")
    try:
        p = int(port)
    except ValueError:
        raise TrunkError("invalid_port", "port must be an integer 1-65535", "port") from None
    if not 1 <= p <= 65535:
        raise TrunkError("invalid_port", "port must be an integer 1-65535", "port")
    return p


def default_port(transport: Any) -> int:
    """The port of a trunk that has none and no SRV records: 5061 for TLS, else 5060 (RFC 3261 19.1.2)."""
    return 5061 if isinstance(transport, str) and transport.strip().lower() == "tls" else 5060


def valid_transport(transport: Any) -> str:
    t = transport.strip().lower() if isinstance(transport, str) else transport
    if t not in TRANSPORTS:
        raise TrunkError("invalid_transport", f"transport must be one of: {', '.join(TRANSPORTS)}", "transport")
    return t


def valid_srtp(srtp: Any, transport: str) -> str:
    """The trunk's SRTP mode. SDES keys cross in the SDP, so SRTP over udp or tcp signalling
    protects nothing from whoever reads the SIP: refused (``srtp_requires_tls``) outside development."""
    mode = srtp.strip().lower() if isinstance(srtp, str) else srtp
    if mode not in SRTP_MODES:
        raise TrunkError("invalid_srtp", f"srtp must be one of: {', '.join(SRTP_MODES)}", "srtp")
    if mode != "off" and transport != "tls" and settings().environment != "development":
        raise TrunkError("srtp_requires_tls", "srtp: its keys travel in the SIP signalling, so it needs"
                         " transport tls", "srtp")
    return mode


def _text(value: Any, field: str, max_len: int, *, quotes: bool = True) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_len or _CTRL_RE.search(value) \
            or (not quotes and ('"' in value or "\\" in value)):
        raise TrunkError(f"invalid_{field}", f"{field}: up to {max_len} printable characters"
                         + ("" if quotes else ", no quotes or backslashes"), field)
    return value


def valid_caller_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return e164(value)
    except ValueError as exc:
        raise TrunkError("invalid_caller_id", f"caller_id: {exc}", "caller_id") from None


def valid_prefixes(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [p for p in re.split(r"[,\s]+", value) if p]
    if not isinstance(value, list) or len(value) > 50:
        raise TrunkError("invalid_allowed_from_prefixes", "allowed_from_prefixes: a list of up to 50 prefixes",
                         "allowed_from_prefixes")
    out = []
    for p in value:
        if not isinstance(p, str) or not _PREFIX_RE.match(p.strip()):
            raise TrunkError("invalid_allowed_from_prefixes",
                             f"allowed_from_prefixes: {str(p)[:20]!r} is not '+' followed by up to 15 digits",
                             "allowed_from_prefixes")
        if p.strip() not in out:
            out.append(p.strip())
    return out


def resolve_caller_id(from_: str, caller_id: str | None, allowed_from_prefixes: list[str] | tuple[str, ...]) -> str:
    """The number a call through this trunk presents (rules in migration 0006)."""
    if allowed_from_prefixes:
        if any(from_.startswith(p) for p in allowed_from_prefixes):
            return from_
        if caller_id:
            return caller_id
        raise TrunkError("caller_id_not_allowed",
                         f"caller id {from_} is not allowed by this account's SIP trunk", "from")
    return caller_id or from_


# --- trunks ---------------------------------------------------------------------------

_COLUMNS = ("host, port, transport, username, password_sealed IS NOT NULL AS has_password, caller_id,"
            " allowed_from_prefixes, digest_realm, allow_legacy_digest, allow_foreign_hops, srtp, created_at, updated_at")


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise TrunkError(f"invalid_{field}", f"{field}: true or false", field)
    return value


def _view(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["allowed_from_prefixes"] = list(d["allowed_from_prefixes"] or [])
    return d


async def set_trunk(db: Any, account_id: str, *, host: Any, port: Any = None, transport: Any = "udp",
                    username: Any = None, password: Any = KEEP, caller_id: Any = None,
                    allowed_from_prefixes: Any = None, digest_realm: Any = None,
                    allow_legacy_digest: Any = False, allow_foreign_hops: Any = False,
                    srtp: Any = "off") -> dict[str, Any]:
    """Create or replace the account's trunk. ``password``: KEEP (default) leaves the stored one,
    None or '' removes it, a string replaces it. ``port`` None: located by DNS at each call
    (services/telephony/sip/locate.py). Returns the public view (no password).

    KEEP with a stored password and another host is refused (``password_required``): the
    password would go to a host it was not given for. The check is part of the upsert, so a
    concurrent change cannot slip between a read and the write."""
    host, port, transport = check_host_allowed(valid_host(host)), valid_port(port), valid_transport(transport)
    srtp = valid_srtp(srtp, transport)
    username = _text(username, "username", 128, quotes=False)
    caller_id, prefixes = valid_caller_id(caller_id), valid_prefixes(allowed_from_prefixes)
    # What the trunk's calls accept (services/telephony/sip/policy.py): strict unless asked.
    realm = _text(digest_realm, "digest_realm", 128, quotes=False)  # it goes inside a quoted header value
    legacy, foreign = _flag(allow_legacy_digest, "allow_legacy_digest"), _flag(allow_foreign_hops, "allow_foreign_hops")
    keep = password is KEEP
    sealed = None
    if not keep:
        pw = _text(password, "password", 256)
        sealed = seal(pw) if pw is not None else None
    row = await db.fetchrow(
        "INSERT INTO sip_trunks (account_id, host, port, transport, username, password_sealed, caller_id,"
        " allowed_from_prefixes, digest_realm, allow_legacy_digest, allow_foreign_hops, srtp)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, $11, $12, $13)"
        " ON CONFLICT (account_id) DO UPDATE SET host = EXCLUDED.host, port = EXCLUDED.port,"
        " transport = EXCLUDED.transport, username = EXCLUDED.username,"
        " password_sealed = CASE WHEN $9 THEN sip_trunks.password_sealed ELSE EXCLUDED.password_sealed END,"
        " caller_id = EXCLUDED.caller_id, allowed_from_prefixes = EXCLUDED.allowed_from_prefixes,"
        " digest_realm = EXCLUDED.digest_realm, allow_legacy_digest = EXCLUDED.allow_legacy_digest,"
        " allow_foreign_hops = EXCLUDED.allow_foreign_hops, srtp = EXCLUDED.srtp, updated_at = now()"
        " WHERE NOT ($9 AND sip_trunks.password_sealed IS NOT NULL AND sip_trunks.host <> EXCLUDED.host)"
        f" RETURNING {_COLUMNS}",
        account_id, host, port, transport, username, sealed, caller_id, prefixes, keep, realm, legacy, foreign, srtp)
    if row is None:  # the WHERE above refused the update
        raise TrunkError("password_required", "the trunk's host changes: give its password again"
                         " (or remove it)", "password")
    return _view(row)


async def get_trunk(db: Any, account_id: str) -> dict[str, Any] | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM sip_trunks WHERE account_id = $1", account_id)
    return _view(row) if row else None


async def delete_trunk(db: Any, account_id: str) -> bool:
    res = await db.execute("DELETE FROM sip_trunks WHERE account_id = $1", account_id)
    return res.endswith(" 1")


# --- sandbox scripted callees ---------------------------------------------------------

# What the sandbox carrier does when these are dialled (a scripted callee cannot take one).
BUSY, NO_ANSWER, FAILED, ANSWER_HANGUP = "+15005550001", "+15005550002", "+15005550003", "+15005550004"
MAGIC_NUMBERS = {
    BUSY: "busy (SIP 486)",
    NO_ANSWER: "rings until the ring timeout: no-answer",
    FAILED: "fails at once (SIP 503): failed",
    ANSWER_HANGUP: "answers, then hangs up at once: completed",
}

_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m)?\s*$", re.I)
MAX_SCRIPT_S = 3600.0


def parse_duration(value: Any, field: str = "duration") -> float:
    """Seconds from 2, 1.5, "2s", "500ms", "1.5", "1m" (non-negative, at most an hour)."""
    if isinstance(value, bool):
        raise TrunkError(f"invalid_{field}", f"{field}: a duration like 2s, 500ms or 1.5", field)
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION_RE.match(value) if isinstance(value, str) else None
        if m is None:
            raise TrunkError(f"invalid_{field}", f"{field}: a duration like 2s, 500ms or 1.5", field)
        seconds = float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[
            m.group(2).lower() if m.group(2) else None]
    if not 0 <= seconds <= MAX_SCRIPT_S or seconds != seconds:
        raise TrunkError(f"invalid_{field}", f"{field}: between 0 and {MAX_SCRIPT_S:g} seconds", field)
    return round(seconds, 3)


def _line(value: Any, field: str) -> str:
    """Words a scripted callee says (rendered by our TTS): up to 1000 characters, no control characters."""
    value = value or ""
    if not isinstance(value, str) or len(value) > 1000 or _CTRL_RE.search(value.replace("\n", " ")):
        raise TrunkError(f"invalid_{field}", f"{field}: up to 1000 characters of text", field)
    return value


def callee_script(*, ring: Any = 1.0, answer: Any = True, after: Any = 0.0, press: Any = "", say: Any = "",
                  say_voice: Any = None, hangup_after: Any = None, voicemail: Any = "",
                  beep: Any = False) -> dict[str, Any]:
    """A validated CalleeScript as stored in sandbox_callees.script.

    A person says `say` (e.g. "Hello?") `after` seconds after answering; a voicemail plays
    its `voicemail` greeting from `after` on, then a beep when `beep`, then listens."""
    if not isinstance(answer, bool):
        raise TrunkError("invalid_answer", "answer must be true or false", "answer")
    press = press or ""
    if not isinstance(press, str) or len(press) > 64 or set(press.upper()) - DTMF_KEYS:
        raise TrunkError("invalid_press", "press: up to 64 of 0-9 * # A-D", "press")
    say = _line(say, "say")
    voicemail = _line(voicemail, "voicemail")
    if voicemail and say:
        raise TrunkError("invalid_voicemail", "voicemail: a callee is a voicemail or says a line, not both",
                         "voicemail")
    if not isinstance(beep, bool):
        raise TrunkError("invalid_beep", "beep must be true or false", "beep")
    if beep and not voicemail:
        raise TrunkError("invalid_beep", "beep: only a voicemail (with a greeting) beeps", "beep")
    script: dict[str, Any] = {"ring": parse_duration(ring, "ring"), "answer": answer,
                              "after": parse_duration(after, "after"), "press": press.upper(), "say": say}
    if say_voice not in (None, ""):
        if not isinstance(say_voice, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", say_voice):
            raise TrunkError("invalid_say_voice", "say_voice: a voice id", "say_voice")
        script["say_voice"] = say_voice
    script["hangup_after"] = None if hangup_after is None else parse_duration(hangup_after, "hangup_after")
    if voicemail:  # only when set: the scripts of before keep their stored layout
        script.update(voicemail=voicemail, beep=beep)
    return script


def valid_callee_number(number: Any) -> str:
    try:
        n = e164(number)
    except ValueError as exc:
        raise TrunkError("invalid_phone_number", f"number: {exc}", "number") from None
    if n in MAGIC_NUMBERS:
        raise TrunkError("magic_number", f"{n} is a sandbox magic number ({MAGIC_NUMBERS[n]}); pick another",
                         "number")
    return n


async def set_callee(db: Any, number: Any, account_id: str, script: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Attach (or replace) a scripted callee; (row, created). account_id '' = every account."""
    import orjson

    n = valid_callee_number(number)
    row = await db.fetchrow(
        "INSERT INTO sandbox_callees (number, account_id, script) VALUES ($1, $2, $3::text::jsonb)"
        " ON CONFLICT (number, account_id) DO UPDATE SET script = EXCLUDED.script"
        " RETURNING number, account_id, script::text AS script, created_at, (xmax = 0) AS created",
        n, account_id, orjson.dumps(script).decode())
    return _callee(row), bool(row["created"])


def _callee(row: Any) -> dict[str, Any]:
    import orjson

    d = dict(row)
    d.pop("created", None)
    d["script"] = orjson.loads(d["script"]) if isinstance(d["script"], str) else d["script"]
    return d


async def list_callees(db: Any, account_id: str | None = None) -> list[dict[str, Any]]:
    """All scripted callees (account_id None), or those of one account ('' = the global ones)."""
    sql = ("SELECT c.number, c.account_id, c.script::text AS script, c.created_at, a.name AS account_name"
           " FROM sandbox_callees c LEFT JOIN accounts a ON a.id = c.account_id")
    if account_id is None:
        rows = await db.fetch(sql + " ORDER BY c.number, c.account_id")
    else:
        rows = await db.fetch(sql + " WHERE c.account_id = $1 ORDER BY c.number", account_id)
    return [_callee(r) for r in rows]


async def remove_callee(db: Any, number: Any, account_id: str) -> bool:
    try:
        n = e164(number)
    except ValueError:
        return False
    res = await db.execute("DELETE FROM sandbox_callees WHERE number = $1 AND account_id = $2", n, account_id)
    return res.endswith(" 1")
