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


def lazy_router(build: Callable[[], Any], module_globals: dict[str, Any]) -> Callable[[str], Any]:
    """A module `__getattr__` that builds `router` on first access.

    Building imports the API's auth, which imports the app; doing it lazily lets the API
    include the router without a circular import, and tests build their own.
    """

    def __getattr__(name: str) -> Any:
        if name == "router":
            module_globals["router"] = r = build()
            return r
        raise AttributeError(name)

    return __getattr__
