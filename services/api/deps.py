"""What routers living in other service packages need from the API app.

Routers of flows, webhooks, telephony are mounted by the API app but tested on their
own with a stand-in auth dependency; these helpers work in both settings.
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import Request


def account_id_of(account: Any) -> str:
    """The id from whatever the auth dependency returns (object with .id, mapping, or str)."""
    if isinstance(account, str):
        return account
    if isinstance(account, dict):
        return account["id"]
    return getattr(account, "account_id", None) or account.id


def default_account_dep() -> Callable[..., Any]:
    """The API's real auth dependency (imported late: the API package owns auth)."""
    from services.api.auth import current_account

    return current_account


async def pool_of(request: Request):
    """The API's pool (app.state.runtime.db()), else app.state.pool, else one made on first use."""
    state = request.app.state
    runtime = getattr(state, "runtime", None)
    if runtime is not None and hasattr(runtime, "db"):
        return await runtime.db()
    pool = getattr(state, "pool", None)
    if pool is not None and hasattr(pool, "acquire"):
        return pool
    pool = getattr(state, "_router_pool", None)
    if pool is None:
        from services.common import db

        pool = state._router_pool = await db.create_pool(min_size=1, max_size=4)
    return pool
