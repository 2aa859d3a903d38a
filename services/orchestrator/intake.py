"""Kafka intake: a PlaceCall from any producer gets the same checks as one from the API."""

from __future__ import annotations

from events import Envelope
from services.common.accounts import LIVE_GRADE
from services.lib.intake import check_place_call


async def validate_place_call(conn, env: Envelope) -> list[dict]:
    """Errors ({code, field, message}) for a PlaceCall command; empty when it may be placed.

    A live call (any carrier but the sandbox) may show only a caller id verified by the
    operator or by a verification call; a sandbox call also one a sk_test_ key added."""
    sandbox = (env.data.get("carrier", "sandbox") if isinstance(env.data, dict) else None) == "sandbox"

    async def verified(account_id: str, number: str) -> bool:
        by = await conn.fetchval("SELECT verified_by FROM numbers WHERE account_id = $1 AND number = $2",
                                 account_id, number)
        return by is not None and (sandbox or by in LIVE_GRADE)

    _, errors = await check_place_call(env.data, env.account_id, verified)
    return list(errors)


async def validate_leg(conn, env: Envelope) -> list[dict]:
    """Errors for a dial step's second call (call.leg.requested): the caller ID it shows must be a
    verified number of the account, by the rules of a PlaceCall's `from`."""
    d = env.data
    sandbox = d.get("carrier", "sandbox") == "sandbox"
    by = await conn.fetchval("SELECT verified_by FROM numbers WHERE account_id = $1 AND number = $2",
                             env.account_id, d.get("from"))
    if by is not None and (sandbox or by in LIVE_GRADE):
        return []
    return [{"code": "number_not_verified", "field": "caller_id",
             "message": f"{d.get('from')} is not a verified number of this account (see /v1/voice/numbers)"}]


class IntakeAuth:
    """Who may write the commands topic (CANARY_KAFKA_INTAKE_AUTH=signed, docs/security.md).

    A command is taken only with a `canary-signature` header (``t=<unix>,v1=<hex>``, the
    HMAC-SHA256 of ``"<t>.<raw record value>"``) made with the API's service key (any key of
    CANARY_KAFKA_SERVICE_KEY) or with the intake key of the account the command names, and a
    ``t`` within the tolerance of the record's Kafka timestamp (not of now: a backlog read
    late is not stale; set the topic's `message.timestamp.type=LogAppendTime` so the broker
    stamps it). Anything else is refused: the handler dead-letters it as
    ``unauthenticated_command`` and emits nothing for it.
    """

    def __init__(self, mode: str, service_keys: list[str], tolerance: float):
        self.enabled = mode == "signed"
        self.service_keys = service_keys
        self.tolerance = tolerance

    @classmethod
    def from_settings(cls, s) -> "IntakeAuth":
        from services.common.signing import secret_list

        return cls(s.kafka_intake_auth, secret_list(s.kafka_service_key), s.kafka_intake_tolerance)

    async def refusal(self, conn, record, account_keys: dict[str, str | None]) -> str | None:
        """Why ``record`` (a consumer Record of the commands topic) is refused, or None.

        ``account_keys`` caches the accounts' intake keys for the batch."""
        import time

        from services.common.accounts import INTAKE_HEADER
        from services.common.signing import SignatureError, verify

        raw = record.header(INTAKE_HEADER)
        if raw is None:
            return f"no {INTAKE_HEADER} header"
        try:
            header = bytes(raw).decode("ascii")
        except (UnicodeDecodeError, TypeError):
            return f"{INTAKE_HEADER} header is not ASCII"
        ts = record.timestamp
        now = ts / 1000.0 if isinstance(ts, int) and ts > 0 else time.time()
        value = record.value or b""
        account_id = record.env.account_id
        if account_id not in account_keys:
            account_keys[account_id] = await conn.fetchval("SELECT intake_secret FROM accounts WHERE id = $1",
                                                           account_id)
        keys = [*self.service_keys, *([account_keys[account_id]] if account_keys[account_id] else [])]
        why = "signature does not match"
        for key in keys:
            try:
                verify(key, value, header, tolerance=self.tolerance, now=now)
                return None
            except SignatureError as exc:
                if str(exc) != "signature does not match":
                    why = str(exc)  # malformed or stale: the same for every key
                    if "tolerance" not in why:
                        break
        return why
