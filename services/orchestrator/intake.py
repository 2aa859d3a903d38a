"""Kafka intake: a PlaceCall from any producer gets the same checks as one from the API."""

from __future__ import annotations

from events import Envelope
from services.lib.intake import check_place_call


async def validate_place_call(conn, env: Envelope) -> list[dict]:
    """Errors ({code, field, message}) for a PlaceCall command; empty when it may be placed."""

    async def verified(account_id: str, number: str) -> bool:
        return bool(await conn.fetchval("SELECT 1 FROM numbers WHERE account_id = $1 AND number = $2",
                                        account_id, number))

    _, errors = await check_place_call(env.data, env.account_id, verified)
    return list(errors)
