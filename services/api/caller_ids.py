"""Caller-ID verification by call, for sk_live_ keys (docs/security.md, "Caller ids").

A live key's new caller id is not usable until the account proves it answers that number,
as hosted providers verify an outgoing caller id: the API places a call to the number that
speaks a 6-digit code, and ``POST /v1/voice/numbers/{number}/verify`` with that code makes
the number a verified one (``numbers.verified_by = 'call'``).

The verification call is an ordinary call through the pipeline (a PlaceCall on the commands
topic, tts of the code), placed by the **deployment's own account**
(``CANARY_CALLER_ID_ACCOUNT``) from its number (``CANARY_CALLER_ID_FROM``) on its carrier
(``CANARY_CALLER_ID_CARRIER``), never on the customer's: a customer's trunk is the customer's
own server, which could answer any number and hear the code; and the customer cannot read
the call (its events, its prompt text) through the API, since it is another account's.

Codes are stored as an HMAC keyed with the first key of ``CANARY_URL_SECRET`` (a plain hash of
one of 10**6 codes is reversed at once), expire after ``CODE_TTL``, allow ``MAX_ATTEMPTS``
tries; then a new call is needed (POST the number again). Calls to one number are at least
``CANARY_CALLER_ID_COOLDOWN`` apart and an account starts at most ``CANARY_CALLER_ID_HOURLY``
an hour: each costs the deployment a call and rings someone's phone.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

from events import new_envelope, topics
from events.envelope import utc_now
from services.api.errors import ApiError
from services.common.accounts import Account, new_id
from services.common.config import settings
from services.common.logging import get_logger
from services.common.signing import secret_list
from services.lib.intake import check_place_call

log = get_logger(service="api")

CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=10)
MAX_ATTEMPTS = 5


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def code_hash(account_id: str, number: str, code: str, key: str | None = None) -> bytes:
    """HMAC-SHA256 of the code, bound to the account and the number (domain-separated)."""
    k = key if key is not None else secret_list(settings().url_signing_secret)[0]
    msg = "\x00".join(("canary caller-id code", account_id, number, code)).encode()
    return hmac.new(k.encode(), msg, hashlib.sha256).digest()


def code_matches(stored: bytes, account_id: str, number: str, code: str) -> bool:
    """Whether ``code`` is the one hashed into ``stored`` (any key of the secret: rotation)."""
    ok = False
    for k in secret_list(settings().url_signing_secret):
        ok |= hmac.compare_digest(bytes(stored), code_hash(account_id, number, code, k))
    return ok


def spoken(code: str) -> str:
    """What the call says: the digits one by one, twice."""
    digits = ", ".join(code)
    return f"Your Canary Voice verification code is {digits}. Again, your code is {digits}."


def _unavailable(why: str) -> ApiError:
    log.error("caller_id_verification_unavailable", reason=why)
    return ApiError(503, "verification_unavailable", "caller-id verification calls are not available on this"
                    " deployment; ask its operator", headers={"Retry-After": "60"})


async def _system(pool: Any) -> tuple[str, str, str]:
    """(account id, caller id, carrier) of the deployment's verification calls, or a 503."""
    s = settings().api
    if not s.caller_id_account or not s.caller_id_from:
        raise _unavailable("CANARY_CALLER_ID_ACCOUNT and CANARY_CALLER_ID_FROM must both be set")
    acct = await pool.fetchval("SELECT id FROM accounts WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1",
                               s.caller_id_account)
    if acct is None:
        raise _unavailable(f"CANARY_CALLER_ID_ACCOUNT names no account ({s.caller_id_account!r})")
    return acct, s.caller_id_from, s.caller_id_carrier


async def start(rt: Any, account: Account, number: str) -> dict[str, Any]:
    """Start (or restart) the verification of ``number``: a new code, a call speaking it.
    Returns the pending row (number, created_at)."""
    pool = await rt.db()
    system, from_, carrier = await _system(pool)
    s = settings().api
    code = new_code()
    call_id = new_id("call")
    data = {"to": number, "from": from_, "tts": {"text": spoken(code)}, "carrier": carrier}
    payload, errors = await check_place_call(data, system, rt.numbers.for_carrier(carrier))
    if errors:
        e = errors[0]
        if e.get("field") == "to":
            raise ApiError(422, e["code"], e["message"], "number")
        raise _unavailable(f"the verification call is refused: {e.get('field')}: {e['message']}")
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = on")
            # One at a time per account: the cooldown and the hourly count are read under a lock.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('caller-id ' || $1))", account.id)
            now = await conn.fetchval("SELECT now()")
            last = await conn.fetchval("SELECT sent_at FROM caller_id_verifications WHERE account_id = $1"
                                       " AND number = $2", account.id, number)
            if last is not None and (now - last).total_seconds() < s.caller_id_cooldown:
                wait = s.caller_id_cooldown - (now - last).total_seconds()
                raise ApiError(429, "rate_limited", f"a verification call to {number} was placed less than"
                               f" {s.caller_id_cooldown:g} s ago", "number",
                               headers={"Retry-After": str(max(1, math.ceil(wait)))})
            recent = await conn.fetchval("SELECT count(*) FROM caller_id_verifications WHERE account_id = $1"
                                         " AND sent_at > $2", account.id, now - timedelta(hours=1))
            if recent >= s.caller_id_hourly:
                raise ApiError(429, "rate_limited", f"at most {s.caller_id_hourly} verification calls an hour",
                               headers={"Retry-After": "600"})
            row = await conn.fetchrow(
                "INSERT INTO caller_id_verifications (account_id, number, code_hash, attempts, expires_at, call_id,"
                " sent_at) VALUES ($1, $2, $3, 0, $4, $5, $6) ON CONFLICT (account_id, number) DO UPDATE SET"
                " code_hash = EXCLUDED.code_hash, attempts = 0, expires_at = EXCLUDED.expires_at,"
                " call_id = EXCLUDED.call_id, sent_at = EXCLUDED.sent_at RETURNING number, created_at",
                account.id, number, code_hash(account.id, number, code), now + CODE_TTL, call_id, now)
    command = payload.model_dump(by_alias=True, exclude_none=True, mode="json")
    command["created_at"] = utc_now()
    env = new_envelope("PlaceCall", call_id, system, command)
    try:
        await rt.publish(topics.commands(), env)
    except ApiError:
        # Not sent (or not known to be): this code is void, a retry places a new call at once.
        await pool.execute("DELETE FROM caller_id_verifications WHERE account_id = $1 AND number = $2"
                           " AND call_id = $3", account.id, number, call_id)
        raise
    log.info("caller_id_verification_call", account_id=account.id, call_id=call_id)
    return dict(row)


async def check(rt: Any, account: Account, number: str, code: Any) -> dict[str, Any]:
    """Check a submitted code; the verified number's row, or the ApiError saying why not.

    Every try counts (a wrong one is committed before the answer), so a guesser gets
    MAX_ATTEMPTS of 10**6 per call."""
    pool = await rt.db()
    outcome: ApiError | None = None
    row = None
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = on")
            v = await conn.fetchrow("SELECT code_hash, attempts, expires_at FROM caller_id_verifications"
                                    " WHERE account_id = $1 AND number = $2 FOR UPDATE", account.id, number)
            if v is None:
                by = await conn.fetchval("SELECT verified_by FROM numbers WHERE account_id = $1 AND number = $2",
                                         account.id, number)
                if by is not None and by != "sandbox":
                    outcome = ApiError(409, "number_exists", f"{number} is already verified for this account",
                                       "number")
                else:
                    outcome = ApiError(404, "verification_not_found", f"no verification of {number} is pending:"
                                       " POST /v1/voice/numbers to get a call", "number")
            elif v["attempts"] >= MAX_ATTEMPTS:
                outcome = ApiError(403, "too_many_attempts", f"{MAX_ATTEMPTS} wrong codes: POST /v1/voice/numbers"
                                   " again for a new call", "code")
            elif v["expires_at"] <= datetime.now(timezone.utc):
                outcome = ApiError(410, "verification_expired", "the code has expired: POST /v1/voice/numbers"
                                   " again for a new call", "code")
            else:
                await conn.execute("UPDATE caller_id_verifications SET attempts = attempts + 1 WHERE account_id = $1"
                                   " AND number = $2", account.id, number)
                good = isinstance(code, str) and len(code) == CODE_DIGITS and code.isascii() and code.isdigit() \
                    and code_matches(v["code_hash"], account.id, number, code)
                if not good:
                    left = MAX_ATTEMPTS - v["attempts"] - 1
                    outcome = ApiError(422, "verification_code_invalid", f"wrong code ({left} tries left)", "code")
                else:
                    await conn.execute("DELETE FROM caller_id_verifications WHERE account_id = $1 AND number = $2",
                                       account.id, number)
                    row = await conn.fetchrow(
                        "INSERT INTO numbers (account_id, number, verified_by) VALUES ($1, $2, 'call')"
                        " ON CONFLICT (account_id, number) DO UPDATE SET verified_by = 'call'"
                        " RETURNING number, created_at", account.id, number)
    if outcome is not None:  # raised after the commit: the attempt stays counted
        raise outcome
    return dict(row)


async def pending(pool: Any, account_id: str) -> dict[str, Any]:
    """number -> created_at of the account's verifications in progress."""
    rows = await pool.fetch("SELECT number, created_at FROM caller_id_verifications WHERE account_id = $1",
                            account_id)
    return {r["number"]: r["created_at"] for r in rows}
