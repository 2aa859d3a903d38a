"""Accounts, API keys and verified numbers (the durable tables of migration 0001).

Keys are ``sk_test_`` / ``sk_live_`` + 32 random base62 characters. Only the SHA-256 of
the whole key is stored; the plaintext is returned once, by :func:`create_key`.
``sk_test_`` keys route calls to the sandbox carrier, ``sk_live_`` keys to the SIP trunk.

Every function takes ``db``: an asyncpg Connection or Pool (both have fetch/execute).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import secrets
import string
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable

import asyncpg

from events.catalog import e164

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
KEY_RE = re.compile(r"^sk_(test|live)_[0-9A-Za-z]{32}$")
MODES = ("test", "live")


def random_base62(n: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(n))


def new_id(prefix: str, n: int = 20) -> str:
    """``prefix_`` + n random base62 characters (call_, acct_, key_ ...).

    One urandom call per id (secrets.choice per character costs ~60 us on the hot path).
    The modulo bias (2**(8*(n+4)) vs 62**n) is below 1e-9 and ids are not secrets anyway.
    """
    x = int.from_bytes(os.urandom(n + 4), "big")
    out = []
    for _ in range(n):
        x, r = divmod(x, 62)
        out.append(BASE62[r])
    return f"{prefix}_{''.join(out)}"


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_mode(key: str) -> str | None:
    """'test' / 'live' for a well-formed key, else None (no database needed to refuse junk)."""
    m = KEY_RE.match(key or "")
    return m.group(1) if m else None


class AccountError(Exception):
    """A repository operation was refused (code is machine readable)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Account:
    """The caller, as established by an API key."""

    id: str
    name: str
    mode: str  # key mode: "test" (sandbox carrier) | "live" (SIP trunk)
    key_id: str = ""
    calls_per_second: float = 10.0
    max_live_calls: int | None = None  # None: the deployment's default (CANARY_MAX_LIVE_CALLS)

    @property
    def carrier(self) -> str:
        return "sandbox" if self.mode == "test" else "sip"


# --- accounts ----------------------------------------------------------------------

async def create_account(db: Any, name: str, calls_per_second: float | None = None) -> dict[str, Any]:
    """Create an account; AccountError('account_exists') if the name is taken."""
    if not name or len(name) > 100 or not re.fullmatch(r"[A-Za-z0-9_.@-]+", name):
        raise AccountError("invalid_name", "account name: 1-100 of A-Z a-z 0-9 _ . @ -")
    try:
        row = await db.fetchrow(
            "INSERT INTO accounts (id, name, signing_secret, calls_per_second)"
            " VALUES ($1, $2, $3, COALESCE($4::real, 10)) RETURNING id, name, calls_per_second, created_at",
            new_id("acct"), name, "whsec_" + random_base62(32), calls_per_second)
    except asyncpg.UniqueViolationError:
        raise AccountError("account_exists", f"account {name!r} already exists") from None
    return dict(row)


async def get_account(db: Any, name: str) -> dict[str, Any] | None:
    row = await db.fetchrow("SELECT id, name, calls_per_second, created_at FROM accounts WHERE name = $1", name)
    return dict(row) if row else None


async def ensure_account(db: Any, name: str, calls_per_second: float | None = None) -> dict[str, Any]:
    """Get or create (idempotent; used by `dev-setup`)."""
    acct = await get_account(db, name)
    if acct is not None:
        if calls_per_second is not None and acct["calls_per_second"] != calls_per_second:
            await db.execute("UPDATE accounts SET calls_per_second = $2 WHERE id = $1", acct["id"], calls_per_second)
            acct["calls_per_second"] = calls_per_second
        return acct
    try:
        return await create_account(db, name, calls_per_second)
    except AccountError as exc:
        if exc.code != "account_exists":
            raise
        return await get_account(db, name)  # type: ignore[return-value]


# --- keys --------------------------------------------------------------------------

async def create_key(db: Any, account_id: str, mode: str) -> tuple[str, str]:
    """A new key for the account: returns (key id, plaintext key). The plaintext is not stored."""
    if mode not in MODES:
        raise AccountError("invalid_mode", "mode must be 'test' or 'live'")
    key = f"sk_{mode}_{random_base62(32)}"
    key_id = new_id("key")
    await db.execute(
        "INSERT INTO api_keys (id, account_id, key_hash, prefix, mode) VALUES ($1, $2, $3, $4, $5)",
        key_id, account_id, hash_key(key), key[:12], mode)
    return key_id, key


async def revoke_key(db: Any, key_id: str) -> bool:
    res = await db.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id)
    return res.endswith(" 1")


async def authenticate(db: Any, key: str) -> Account | None:
    """The account of a valid, unrevoked key (None otherwise)."""
    if key_mode(key) is None:
        return None
    row = await db.fetchrow(
        "SELECT k.id AS key_id, k.mode, a.id, a.name, a.calls_per_second, a.max_live_calls FROM api_keys k"
        " JOIN accounts a ON a.id = k.account_id WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        hash_key(key))
    if row is None:
        return None
    return Account(id=row["id"], name=row["name"], mode=row["mode"], key_id=row["key_id"],
                   calls_per_second=float(row["calls_per_second"]), max_live_calls=row["max_live_calls"])


async def set_limits(db: Any, account_id: str, *, calls_per_second: float | None = None,
                     max_live_calls: int | None = None, default_live_calls: bool = False) -> None:
    """Change an account's limits (None: unchanged; `default_live_calls`: back to the default)."""
    if calls_per_second is not None:
        if not calls_per_second > 0:
            raise AccountError("invalid_limit", "calls per second must be > 0")
        await db.execute("UPDATE accounts SET calls_per_second = $2 WHERE id = $1", account_id, calls_per_second)
    if max_live_calls is not None and max_live_calls < 0:
        raise AccountError("invalid_limit", "max live calls must be >= 0")
    if max_live_calls is not None or default_live_calls:
        await db.execute("UPDATE accounts SET max_live_calls = $2 WHERE id = $1", account_id, max_live_calls)


LIVE_CALLS_SQL = (
    # Decided and not ended, plus accepted by the API and not yet decided (recent only: an
    # orphan the housekeeping has not removed yet must not hold a slot).
    "SELECT (SELECT count(*) FROM orch_calls WHERE account_id = $1"
    "        AND NOT COALESCE((state->>'ended')::boolean, false))"
    "     + (SELECT count(*) FROM call_requests r WHERE r.account_id = $1 AND r.state IN ('pending', 'published')"
    "        AND r.created_at > now() - interval '10 minutes'"
    "        AND NOT EXISTS (SELECT 1 FROM orch_calls o WHERE o.call_id = r.id))")


async def live_calls(db: Any, account_id: str) -> int:
    """How many calls of the account are live: accepted and not yet ended."""
    return int(await db.fetchval(LIVE_CALLS_SQL, account_id))


# --- Kafka intake keys (commands produced by others than the API) -------------------
#
# With CANARY_KAFKA_INTAKE_AUTH=signed the orchestrator takes a command only with a Kafka
# header `canary-signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw record value>">`
# (services/common/signing.py), keyed with the API's service key (CANARY_KAFKA_SERVICE_KEY)
# or with the intake key of the account the command names. A key binds its holder to its
# account: a signature with account A's key does not pass for a command of account B.

INTAKE_HEADER = "canary-signature"
INTAKE_KEY_RE = re.compile(r"^cik_[0-9A-Za-z]{32}$")


async def create_intake_key(db: Any, account_id: str) -> str:
    """A new intake key for the account (replaces the previous one at once); shown once."""
    key = "cik_" + random_base62(32)
    res = await db.execute("UPDATE accounts SET intake_secret = $2 WHERE id = $1", account_id, key)
    if not res.endswith(" 1"):
        raise AccountError("account_not_found", f"no account {account_id}")
    return key


async def revoke_intake_key(db: Any, account_id: str) -> bool:
    res = await db.execute("UPDATE accounts SET intake_secret = NULL WHERE id = $1 AND intake_secret IS NOT NULL",
                           account_id)
    return res.endswith(" 1")


def sign_command(secret: str, value: bytes, timestamp: int | None = None) -> list[tuple[str, bytes]]:
    """The Kafka headers that sign a command's raw value (what producers send with it)."""
    from services.common.signing import sign

    return [(INTAKE_HEADER, sign(secret, value, timestamp).encode())]


# --- verified numbers ----------------------------------------------------------------

VERIFIED_BY = ("operator", "call", "sandbox")  # how a number was verified (migration 0009)
LIVE_GRADE = ("operator", "call")  # what a live (non-sandbox) call may show as its caller id


async def add_number(db: Any, account_id: str, number: str, verified_by: str = "operator") -> dict[str, Any]:
    """Verify a caller id for the account; AccountError('number_exists') if already there.

    ``verified_by``: 'operator' (the CLI), 'call' (a verification call answered with its
    code) or 'sandbox' (a sk_test_ key's shortcut: sandbox calls only)."""
    if verified_by not in VERIFIED_BY:
        raise AccountError("invalid_field", f"verified_by must be one of {VERIFIED_BY}")
    try:
        number = e164(number)
    except ValueError as exc:
        raise AccountError("invalid_phone_number", str(exc)) from None
    row = await db.fetchrow(
        "INSERT INTO numbers (account_id, number, verified_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        " RETURNING number, created_at, verified_by, voice_url, flow_id, webhook_url", account_id, number, verified_by)
    if row is None:
        raise AccountError("number_exists", f"{number} is already verified for this account")
    return dict(row)


async def ensure_number(db: Any, account_id: str, number: str) -> str:
    number = e164(number)
    await db.execute("INSERT INTO numbers (account_id, number) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                     account_id, number)
    return number


async def list_numbers(db: Any, account_id: str) -> list[dict[str, Any]]:
    rows = await db.fetch("SELECT number, created_at, verified_by, voice_url, flow_id, webhook_url FROM numbers"
                          " WHERE account_id = $1"
                          " ORDER BY number", account_id)
    return [dict(r) for r in rows]


async def remove_number(db: Any, account_id: str, number: str) -> bool:
    res = await db.execute("DELETE FROM numbers WHERE account_id = $1 AND number = $2", account_id, number)
    return res.endswith(" 1")


async def is_verified(db: Any, account_id: str, number: str, *, live: bool = True) -> bool:
    """Whether the account may show ``number``: on a live call (default) only numbers verified by
    the operator or by a call; on a sandbox call those of the sk_test_ shortcut too."""
    by = await db.fetchval("SELECT verified_by FROM numbers WHERE account_id = $1 AND number = $2",
                           account_id, number)
    return by is not None and (not live or by in LIVE_GRADE)


class VerifiedNumbers:
    """`lookup` for :func:`services.lib.intake.check_place_call`, cached per account.

    ``await lookup(account_id, number) -> bool``: whether a **live** call may show the
    number (verified by the operator or by a verification call); ``lookup.sandbox`` is the
    lookup of sandbox calls, which also take the numbers a sk_test_ key added at once. Each
    account's numbers are kept for ``ttl`` seconds (a number removed elsewhere is honoured
    within that time; the API invalidates its own cache at once on its numbers routes).
    """

    def __init__(self, db: Any, ttl: float = 5.0):
        self.db = db
        self.ttl = ttl
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}

    async def verified(self, account_id: str) -> dict[str, str]:
        """number -> how it was verified (``VERIFIED_BY``)."""
        now = time.monotonic()
        hit = self._cache.get(account_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        rows = await self.db.fetch("SELECT number, verified_by FROM numbers WHERE account_id = $1", account_id)
        nums = {r["number"]: r["verified_by"] for r in rows}
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[account_id] = (now + self.ttl, nums)
        return nums

    async def numbers(self, account_id: str) -> frozenset[str]:
        """The numbers a live call of the account may show."""
        return frozenset(n for n, by in (await self.verified(account_id)).items() if by in LIVE_GRADE)

    def invalidate(self, account_id: str) -> None:
        self._cache.pop(account_id, None)

    async def __call__(self, account_id: str, number: str) -> bool:
        return (await self.verified(account_id)).get(number) in LIVE_GRADE

    async def sandbox(self, account_id: str, number: str) -> bool:
        return number in await self.verified(account_id)

    def for_carrier(self, carrier: str) -> Callable[[str, str], Awaitable[bool]]:
        """The lookup of a call on ``carrier``: only a sandbox call takes sandbox-verified numbers."""
        return self.sandbox if carrier == "sandbox" else self


Lookup = Callable[[str, str], "bool | Awaitable[bool]"]


async def call_lookup(lookup: Lookup, account_id: str, number: str) -> bool:
    """Call a sync or async lookup."""
    res = lookup(account_id, number)
    if inspect.isawaitable(res):
        res = await res
    return bool(res)


def iso(dt: datetime | None) -> str | None:
    """timestamptz -> RFC 3339 with millisecond precision and Z."""
    if dt is None:
        return None
    from datetime import timezone

    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
