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

