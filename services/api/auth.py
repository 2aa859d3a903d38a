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
from services.api.runtime import HANGUP, READ, WRITE, too_many

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


def client_address(request: Request) -> str:
    """The peer's address (a proxy in front is one client: see docs/security.md)."""
    return request.client.host if request.client else "?"


def request_class(request: Request) -> str | None:
    """The budget a request draws on: None for call creation (the account's calls_per_second)."""
    method, path = request.method, request.url.path
    if method in ("GET", "HEAD"):
        return READ
    if method == "POST" and path.rstrip("/") == "/v1/voice/calls":
        return None
    if method == "POST" and path.endswith("/hangup"):
        return HANGUP
    return WRITE


def _refuse(rt, address: str, code: str, message: str) -> ApiError:
    """401, charged to the client address's failure budget; 429 once that is spent."""
    wait = rt.auth_failures.take(address)
    if wait > 0:
        return too_many("too many failed authentications from this address", wait)
    return ApiError(401, code, message, headers=_CHALLENGE)


async def authenticate_request(request: Request) -> Account:
    """Same as current_account, callable without the dependency machinery (hot paths).

    Runs before anything reads the body or validates a parameter, and charges the request
    to the account's budget for its class (429 beyond it), so invalid requests are
    limited like valid ones. Failed authentications are limited per client address; a key
    that would need a database lookup is refused with 429 once that address has spent its
    budget (a valid key found in the cache still passes)."""
    rt = request.app.state.runtime
    address = client_address(request)
    header = request.headers.get("authorization")
    if not header:
        raise _refuse(rt, address, "missing_api_key", "missing Authorization: Bearer <API key>")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise _refuse(rt, address, "invalid_api_key", "Authorization must be 'Bearer <API key>'")
    key = key.strip()
    if key_mode(key) is None:
        raise _refuse(rt, address, "invalid_api_key", "invalid API key")
    account = rt.cached_account(key)
    if account is None:
        wait = rt.auth_failures.peek(address)
        if wait > 0:
            raise too_many("too many failed authentications from this address", wait)
        account = await rt.authenticate(key)
        if account is None:
            raise _refuse(rt, address, "invalid_api_key", "invalid or revoked API key")
    kind = request_class(request)
    if kind is None:
        rt.rate_limit(account)
    else:
        rt.limit(kind, account)
    return account
