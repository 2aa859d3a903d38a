"""Dialling through an account's SIP trunk: the stored trunk (services/lib/trunks.py)
as the carrier's TrunkConfig, and the caller id its rules allow. Only the gateway
unseals the password, here, to answer a digest challenge."""

from __future__ import annotations

import dataclasses
from typing import Any

from services.lib.trunks import NO_TRUNK, TrunkError, resolve_caller_id, unseal
from services.telephony.carrier import DialRequest, TrunkConfig


async def trunk_config(db: Any, account_id: str) -> tuple[TrunkConfig, list[str]] | None:
    """The account's trunk for dialling (password unsealed) and its allowed from prefixes."""
    row = await db.fetchrow(
        "SELECT host, port, transport, username, password_sealed, caller_id, allowed_from_prefixes"
        " FROM sip_trunks WHERE account_id = $1", account_id)
    if row is None:
        return None
    pw = unseal(row["password_sealed"]) if row["password_sealed"] is not None else None
    return (TrunkConfig(host=row["host"], port=row["port"], transport=row["transport"], username=row["username"],
                        password=pw, caller_id=row["caller_id"]),
            list(row["allowed_from_prefixes"] or []))


async def prepare_dial(db: Any, req: DialRequest) -> DialRequest:
    """``req`` with the account's trunk and the caller id its rules allow; TrunkError (message
    fit for call.failed's reason) when there is no trunk or the caller id is refused."""
    found = await trunk_config(db, req.account_id)
    if found is None:
        raise TrunkError("trunk_not_found", NO_TRUNK)
    trunk, prefixes = found
    from_ = resolve_caller_id(req.from_, trunk.caller_id, prefixes)
    # The resolved number goes in `from_`; the carrier's own override is not needed again.
    return dataclasses.replace(req, from_=from_, trunk=dataclasses.replace(trunk, caller_id=None))
