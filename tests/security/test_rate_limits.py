"""Rate limits come before validation, on every endpoint, and on failed authentication.

Before: validation ran first and only POST /v1/voice/calls was limited, so 30 invalid
requests in a row all got 422, never 429; reads and other writes were not limited at all;
unknown keys each cost a Postgres query, without limit, and a flood of them cleared the
key cache, valid keys included."""

from __future__ import annotations

import uuid

import httpx
import pytest

from services.common import accounts
from tests.api_app import new_account, running_app
from tests.security.conftest import Acct, make_account


def _client(app, address: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)),
                             base_url="http://api.test")


def _assert_limited(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1


def _unknown_key() -> str:
    return "sk_test_" + uuid.uuid4().hex[:32]


async def test_invalid_call_requests_are_limited(stack, prefix, monkeypatch):
    acct = Acct(*await new_account("sec", 1.0))  # 1 call/s: a burst of 20
    async with running_app(prefix, monkeypatch) as app, _client(app) as c:
        codes = [(await c.post("/v1/voice/calls", headers=acct.test, json={"to": "nope"})).status_code
                 for _ in range(30)]
        assert codes[:20] == [422] * 20 and set(codes[20:]) == {429}, codes
        _assert_limited(await c.post("/v1/voice/calls", headers=acct.test, content=b"{not json"))


@pytest.mark.parametrize("env,method,path,body", [
    ("CANARY_API_READ_RATE", "GET", "/v1/voice/calls?limit=0", None),  # 422: limit must be >= 1
    ("CANARY_API_READ_RATE", "GET", "/v1/voice/calls/call_nosuch", None),  # 404
    ("CANARY_API_WRITE_RATE", "POST", "/v1/voice/numbers", {"number": "not a number"}),  # 422
    ("CANARY_API_WRITE_RATE", "PUT", "/v1/voice/flows/flow_x", b"{"),  # 400
])
async def test_every_endpoint_class_is_limited_before_validation(stack, prefix, monkeypatch, env, method, path, body):
    monkeypatch.setenv(env, "1")  # a burst of 20
    acct = await make_account()
    async with running_app(prefix, monkeypatch) as app, _client(app) as c:
        kw = {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
        codes = [(await c.request(method, path, headers=acct.test, **kw)).status_code for _ in range(22)]
        assert 429 not in codes[:20] and codes[20:] == [429, 429], codes
        _assert_limited(await c.request(method, path, headers=acct.test, **kw))
        # one account's budget is its own
        other = await make_account()
        assert (await c.request(method, path, headers=other.test, **kw)).status_code != 429


async def test_unknown_keys_are_limited_per_address_and_cached(stack, prefix, monkeypatch):
    acct = await make_account()
    lookups = []
    real = accounts.authenticate

    async def counting(db, key):
        lookups.append(key)
        return await real(db, key)

    monkeypatch.setattr(accounts, "authenticate", counting)
    async with running_app(prefix, monkeypatch) as app, _client(app) as c:
        assert (await c.get("/v1/voice/calls", headers=acct.test)).status_code == 200  # cached from now on
        same = _unknown_key()
        for _ in range(3):  # one query: the unknown key is remembered
            r = await c.get("/v1/voice/calls", headers={"Authorization": f"Bearer {same}"})
            assert r.status_code == 401
        assert lookups.count(same) == 1
        codes = [(await c.get("/v1/voice/calls", headers={"Authorization": f"Bearer {_unknown_key()}"})).status_code
                 for _ in range(25)]
        assert codes[:17] == [401] * 17 and set(codes[17:]) == {429}, codes  # 20 failures: the burst
        _assert_limited(await c.get("/v1/voice/calls", headers={"Authorization": "Bearer nonsense"}))
        _assert_limited(await c.get("/v1/voice/calls"))
        assert len(lookups) <= 1 + 1 + 17  # refused keys cost no query
        # the flood blocks neither a valid (cached) key from that address, nor other addresses
        assert (await c.get("/v1/voice/calls", headers=acct.test)).status_code == 200
        async with _client(app, "192.0.2.7") as other:
            r = await other.get("/v1/voice/calls", headers={"Authorization": f"Bearer {_unknown_key()}"})
            assert r.status_code == 401


async def test_recording_links_are_limited_per_address(stack, prefix, monkeypatch):
    monkeypatch.setenv("CANARY_API_MEDIA_RATE", "1")
    async with running_app(prefix, monkeypatch) as app, _client(app) as c:
        url = "/v1/voice/recordings/rec_x/media?expires=oops&signature=x"  # 422 before: expires is no int
        codes = [(await c.get(url)).status_code for _ in range(21)]
        assert 429 not in codes[:20] and codes[20] == 429, codes
        _assert_limited(await c.get(url))


async def test_a_flood_of_unknown_keys_does_not_evict_valid_ones(monkeypatch):
    """The key cache used to be cleared whole when it held 100,000 entries, unknown keys included."""
    from services.api.runtime import Runtime
    from services.common.accounts import Account

    valid = "sk_test_" + "v" * 32
    lookups = []

    async def fake(db, key):
        lookups.append(key)
        return Account(id="acct_1", name="a", mode="test") if key == valid else None

    async def no_db():
        return None

    monkeypatch.setattr(accounts, "authenticate", fake)
    rt = Runtime()
    monkeypatch.setattr(rt, "db", no_db)
    assert (await rt.authenticate(valid)).id == "acct_1"
    for i in range(100_001):
        assert await rt.authenticate(f"sk_test_{i:032d}") is None
    lookups.clear()
    assert (await rt.authenticate(valid)).id == "acct_1"
    assert lookups == []  # still cached
    assert len(getattr(rt, "_unknown", rt._keys)) <= 100_000
