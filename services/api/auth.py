"""The shared auth dependency: ``Depends(current_account)`` in any router.

Bearer API keys (``sk_test_...`` / ``sk_live_...``); only their SHA-256 is stored.
Other services' routers use it the same way::

    from services.api.auth import Account, current_account

    @router.get("/v1/voice/things")
    async def things(account: Account = Depends(current_account)): ...
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.common.accounts import Account, key_mode
from services.api.errors import ApiError

__all__ = ["Account", "current_account", "runtime"]

bearer = HTTPBearer(auto_error=False, bearerFormat="sk_test_... | sk_live_...",
                    description="API key: `Authorization: Bearer sk_test_...` (sandbox) or `sk_live_...`")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="canary"'}


def runtime(request: Request):
    """The API's Runtime (pool, producer, caches)."""
    return request.app.state.runtime


async def current_account(request: Request,
                          creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Account:
    """The account of the request's API key, or a 401."""
    return await authenticate_request(request)


async def authenticate_request(request: Request) -> Account:
    """Same as current_account, callable without the dependency machinery (hot paths)."""
    header = request.headers.get("authorization")
    if not header:
        raise ApiError(401, "missing_api_key", "missing Authorization: Bearer <API key>", headers=_CHALLENGE)
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "invalid_api_key", "Authorization must be 'Bearer <API key>'", headers=_CHALLENGE)
    key = key.strip()
    if key_mode(key) is None:
        raise ApiError(401, "invalid_api_key", "invalid API key", headers=_CHALLENGE)
    account = await request.app.state.runtime.authenticate(key)
    if account is None:
        raise ApiError(401, "invalid_api_key", "invalid or revoked API key", headers=_CHALLENGE)
    return account
