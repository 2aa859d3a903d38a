"""Inbound calls: how an account's numbers answer, and which incoming call reaches which.

A number answers with a stored flow (``flow_id``) or with the flow its app returns from
``voice_url`` (asked when the call comes in: the flow is a single ``webhook`` step on that
URL, so the request is signed, SSRF-guarded, time-bounded and its answer validated exactly
as every flow webhook step's); ``webhook_url`` gets its calls' status webhooks. The API
sets them (PATCH /v1/voice/numbers/{number}); the gateway routes SIP INVITEs with
:func:`route` on a :class:`Directory` snapshot, and the sandbox's call-in uses
:func:`received_data` too.

Every function taking ``db`` takes an asyncpg Connection or Pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from services.common.accounts import LIVE_GRADE

ROUTE_FIELDS = ("voice_url", "flow_id", "webhook_url")
VOICE_URL_STEP = "answer"  # the step name a voice_url's app sees in its webhook's `step`
RING_TIMEOUT_S = 30  # how long an inbound call may wait for the orchestrator's answer instruction


class RouteError(ValueError):
    """A number's route change refused: ``code`` and ``field`` say which and why."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


@dataclass(frozen=True, slots=True)
class NumberRoute:
    """Where calls to one of an account's numbers go."""

    account_id: str
    number: str
    voice_url: str | None = None
    flow_id: str | None = None
    webhook_url: str | None = None
    live: bool = True  # verified for live calls (operator or verification call), not the sandbox shortcut

    @property
    def routable(self) -> bool:
        return bool(self.voice_url or self.flow_id)


def check_changes(body: Mapping[str, Any]) -> dict[str, str | None]:
    """The route fields of a PATCH body, checked (null clears one); RouteError otherwise."""
    from services.common.ssrf import SsrfError, check_url

    changes: dict[str, str | None] = {}
    for name in ROUTE_FIELDS:
        if name not in body:
            continue
        value = body[name]
        if value is not None and (not isinstance(value, str) or not value or len(value) > 2048 or "\x00" in value):
            raise RouteError("invalid_field", f"{name} must be a non-empty string (at most 2048 characters) or null",
                             name)
        if value is not None and name != "flow_id":
            try:
                check_url(value)
            except SsrfError as exc:
                raise RouteError("invalid_url", f"{name}: {exc}", name) from None
        changes[name] = value
    if not changes:
        raise RouteError("empty_update", f"give at least one of {', '.join(ROUTE_FIELDS)}")
    if changes.get("voice_url") and changes.get("flow_id"):
        raise RouteError("conflicting_fields", "a number answers with voice_url or flow_id, not both", "flow_id")
    # Setting one route clears the other: a number has one way to answer.
    if changes.get("voice_url"):
        changes.setdefault("flow_id", None)
    if changes.get("flow_id"):
        changes.setdefault("voice_url", None)
    return changes


async def set_route(db: Any, account_id: str, number: str, changes: Mapping[str, str | None]) -> dict | None:
    """Apply checked ``changes`` to the account's number; its row, or None when it has no such number.

    RouteError('flow_not_found') when flow_id names no live flow of the account."""
    if changes.get("flow_id"):
        exists = await db.fetchval("SELECT true FROM flows WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL",
                                   changes["flow_id"], account_id)
        if not exists:
            raise RouteError("flow_not_found", f"{changes['flow_id'][:64]!r} is not a flow of this account", "flow_id")
    names = list(changes)
    sets = ", ".join(f"{n} = ${i + 3}" for i, n in enumerate(names))
    return await db.fetchrow(
        f"UPDATE numbers SET {sets}, updated_at = now() WHERE account_id = $1 AND number = $2"
        " RETURNING number, created_at, verified_by, voice_url, flow_id, webhook_url",
        account_id, number, *(changes[n] for n in names))


async def get_route(db: Any, account_id: str, number: str) -> NumberRoute | None:
    """The account's number with its route, or None when the account has no such number."""
    row = await db.fetchrow("SELECT number, verified_by, voice_url, flow_id, webhook_url FROM numbers"
                            " WHERE account_id = $1 AND number = $2", account_id, number)
    return _route_of(account_id, row) if row else None


async def routable_numbers(db: Any, account_ids: list[str]) -> list[NumberRoute]:
    """Every number of these accounts that answers calls (one query, on a partial index)."""
    rows = await db.fetch("SELECT account_id, number, verified_by, voice_url, flow_id, webhook_url FROM numbers"
                          " WHERE account_id = ANY($1::text[]) AND (voice_url IS NOT NULL OR flow_id IS NOT NULL)",
                          account_ids)
    return [_route_of(r["account_id"], r) for r in rows]


def _route_of(account_id: str, row: Mapping[str, Any]) -> NumberRoute:
    return NumberRoute(account_id, row["number"], row["voice_url"], row["flow_id"], row["webhook_url"],
                       live=row["verified_by"] in LIVE_GRADE)


def public_route(row: Mapping[str, Any]) -> dict[str, Any]:
    """The route fields of a numbers row as the API shows them."""
    return {name: row.get(name) for name in ROUTE_FIELDS}


def voice_url_flow(url: str) -> dict[str, Any]:
    """The flow a voice_url number runs: its app's answer is the call's steps."""
    return {"name": "voice_url", "start": VOICE_URL_STEP,
            "steps": {VOICE_URL_STEP: {"kind": "webhook", "url": url}}}


def received_data(route: NumberRoute, from_: str, carrier: str, *, caller: Mapping[str, Any] | None = None,
                  sip: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `call.received` payload of a call to ``route``'s number from ``from_``."""
    data: dict[str, Any] = {"to": route.number, "from": from_, "carrier": carrier}
    for name in ROUTE_FIELDS:
        if getattr(route, name):
            data[name] = getattr(route, name)
    if caller:
        data["caller"] = dict(caller)
    if sip:
        data["sip"] = dict(sip)
    return data


async def sandbox_call(db: Any, account_id: str, to: Any, from_: Any, script: Mapping[str, Any]):
    """The `call.received` envelope of a sandbox caller (a checked ``trunks.callee_script``)
    dialling the account's number ``to``; RouteError when either number or the route is wrong."""
    from events import new_envelope
    from events.catalog import e164
    from services.common.accounts import new_id

    numbers = {}
    for name, value in (("to", to), ("from", from_)):
        try:
            numbers[name] = e164(value) if isinstance(value, str) else e164("")
        except ValueError as exc:
            raise RouteError("invalid_phone_number", f"{name}: {exc}", name) from None
    found = await get_route(db, account_id, numbers["to"])
    if found is None:
        raise RouteError("number_not_found", f"{numbers['to']} is not a number of this account", "to")
    if not found.routable:
        raise RouteError("number_not_routed", f"{numbers['to']} has neither voice_url nor flow_id "
                                              "(PATCH /v1/voice/numbers/{number})", "to")
    return new_envelope("call.received", new_id("call"), account_id,
                        received_data(found, numbers["from"], "sandbox", caller=script))


# --- routing an INVITE --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Accept:
    route: NumberRoute
    srtp: str = "off"  # the SRTP mode of the trunk the call came from (its offer must fit it)


@dataclass(frozen=True, slots=True)
class Reject:
    code: int  # the SIP final response
    reason: str


UNKNOWN_SOURCE = Reject(403, "Forbidden")
UNKNOWN_NUMBER = Reject(404, "Not Found")


@dataclass(frozen=True, slots=True)
class Directory:
    """A snapshot of who may call in and where to: trunk source IPs -> accounts, and the
    routable numbers of those accounts. Built by the gateway, refreshed in the background."""

    accounts_by_ip: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    numbers: Mapping[tuple[str, str], NumberRoute] = field(default_factory=dict)
    srtp: Mapping[str, str] = field(default_factory=dict)  # account id -> its trunk's SRTP mode (absent: off)

    @classmethod
    def build(cls, trunk_ips: Mapping[str, list[str]], routes: list[NumberRoute],
              srtp: Mapping[str, str] | None = None) -> "Directory":
        """From the trunks' IPs (account id -> its trunk's addresses), the routable numbers and
        the trunks' SRTP modes."""
        by_ip: dict[str, list[str]] = {}
        for account_id, ips in trunk_ips.items():
            for ip in ips:
                by_ip.setdefault(ip, []).append(account_id)
        return cls({ip: tuple(sorted(a)) for ip, a in by_ip.items()},
                   {(r.account_id, r.number): r for r in routes if r.live}, dict(srtp or {}))


def dialed_number(user: str) -> str | None:
    """The E.164 number a Request-URI's user part names (``+1555...``, ``1555...``), or None."""
    from events.catalog import e164

    user = user.split(";", 1)[0]
    digits = user[1:] if user.startswith("+") else user
    if not digits.isascii() or not digits.isdigit() or not 6 <= len(digits) <= 15:
        return None
    try:
        return e164("+" + digits)
    except ValueError:
        return None


def route(directory: Directory, source_ip: str, number: str | None) -> Accept | Reject:
    """What an INVITE from ``source_ip`` to ``number`` gets: accepted for the first account whose
    trunk it came from and that owns the number; 403 from an address no trunk has, 404 else."""
    accounts = directory.accounts_by_ip.get(source_ip)
    if not accounts:
        return UNKNOWN_SOURCE
    if number is None:
        return UNKNOWN_NUMBER
    for account_id in accounts:
        found = directory.numbers.get((account_id, number))
        if found is not None and found.routable:
            return Accept(found, directory.srtp.get(account_id, "off"))
    return UNKNOWN_NUMBER
