"""Retries, backoff, Retry-After, idempotency keys and errors against a real local server."""

import time

import pytest

from canary import (
    APIConnectionError,
    APITimeoutError,
    AsyncCanary,
    Canary,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
)
from canary._retry import backoff_delay, parse_retry_after

from .conftest import Reply

CALL = {"id": "call_abc123xyz", "to": "+15551234567", "from": "+15559876543", "status": "queued",
        "direction": "outbound", "created_at": "2024-01-01T12:00:00Z"}
ARGS = dict(to="+15551234567", from_="+15559876543", tts={"text": "Hello from Canary!"})
UNAVAILABLE = {"error": {"code": "kafka_unavailable", "message": "retry later", "field": None}}


def test_503_then_200_is_retried_with_the_same_idempotency_key(server):
    server.then(Reply(503, UNAVAILABLE, {"Retry-After": "1"}), Reply(201, CALL))
    client = Canary("sk_test_abc", base_url=server.url)
    started = time.monotonic()
    call = client.voice.call(**ARGS, record=True)
    assert call.id == "call_abc123xyz" and call.from_ == "+15559876543"
    assert len(server.requests) == 2
    first, second = server.requests
    assert second["at"] - first["at"] >= 0.95, "Retry-After: 1 was not honored"
    assert time.monotonic() - started < 5
    key = first["headers"]["idempotency-key"]
    assert key and second["headers"]["idempotency-key"] == key
    assert first["headers"]["authorization"] == "Bearer sk_test_abc"
    assert first["body"] == {"to": "+15551234567", "from": "+15559876543",
                             "tts": {"text": "Hello from Canary!"}, "record": True}


def test_each_create_gets_its_own_key_and_an_explicit_key_is_sent(server):
    server.then(Reply(201, CALL), Reply(201, CALL), Reply(201, CALL))
    client = Canary("sk_test_abc", base_url=server.url)
    client.voice.call(**ARGS)
    client.voice.calls.create(**ARGS)
    client.voice.call(**ARGS, idempotency_key="order-42")
    keys = [r["headers"]["idempotency-key"] for r in server.requests]
    assert keys[0] != keys[1] and keys[2] == "order-42"


def test_429_without_retry_after_uses_exponential_backoff(server, monkeypatch):
    import canary._base as base

    chosen = []  # the delays the client picked (a busy machine only adds to the time it takes)

    def recording_backoff(*args):
        chosen.append(real_backoff(*args))
        return chosen[-1]

    real_backoff = base.backoff_delay
    monkeypatch.setattr(base, "backoff_delay", recording_backoff)
    limited = {"error": {"code": "rate_limited", "message": "slow down", "field": None}}
    server.then(Reply(429, limited), Reply(429, limited), Reply(200, CALL))
    client = Canary("sk_test_abc", base_url=server.url, max_retries=2)
    assert client.voice.calls.get("call_abc123xyz").status == "queued"
    assert len(server.requests) == 3
    assert len(chosen) == 2 and 0.25 <= chosen[0] <= 0.5 and 0.5 <= chosen[1] <= 1.0, chosen  # 0.5 s, 1 s, jittered
    gaps = [b["at"] - a["at"] for a, b in zip(server.requests, server.requests[1:])]
    assert all(g >= d - 0.01 for g, d in zip(gaps, chosen)), (gaps, chosen)  # and it did wait that long


def test_retries_are_bounded_and_the_typed_error_is_raised(server):
    server.then(*[Reply(429, {"error": {"code": "rate_limited", "message": "slow down", "field": None}},
                        {"Retry-After": "0"})] * 5)
    client = Canary("sk_test_abc", base_url=server.url, max_retries=2)
    with pytest.raises(RateLimitError) as err:
        client.voice.call(**ARGS)
    assert len(server.requests) == 3
    assert err.value.status == 429 and err.value.code == "rate_limited" and err.value.retry_after == 0


def test_a_retry_after_too_long_is_not_waited_for(server):
    server.then(Reply(503, UNAVAILABLE, {"Retry-After": "3600"}))
    client = Canary("sk_test_abc", base_url=server.url)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as err:
        client.voice.call(**ARGS)
    assert time.monotonic() - started < 2 and len(server.requests) == 1
    assert err.value.retry_after == 3600


@pytest.mark.parametrize("status,cls", [(400, InvalidRequestError), (404, NotFoundError),
                                        (409, ConflictError), (422, InvalidRequestError)])
def test_other_4xx_are_never_retried(server, status, cls):
    body = {"error": {"code": "invalid_phone_number", "message": "to must be E.164", "field": "to"}}
    server.then(Reply(status, body, {"Retry-After": "0"}), Reply(201, CALL))
    client = Canary("sk_test_abc", base_url=server.url)
    with pytest.raises(cls) as err:
        client.voice.call(**ARGS)
    assert len(server.requests) == 1
    e = err.value
    assert (e.status, e.code, e.field, e.message) == (status, "invalid_phone_number", "to", "to must be E.164")
    assert "invalid_phone_number" in str(e) and "field: to" in str(e)


def test_network_errors_are_retried(server):
    server.then(Reply(drop=True), Reply(201, CALL))
    client = Canary("sk_test_abc", base_url=server.url)
    assert client.voice.call(**ARGS).id == "call_abc123xyz"
    assert len(server.requests) == 2
    assert server.requests[0]["headers"]["idempotency-key"] == server.requests[1]["headers"]["idempotency-key"]


def test_connection_refused_raises_api_connection_error():
    client = Canary("sk_test_abc", base_url="http://127.0.0.1:9", max_retries=1)
    with pytest.raises(APIConnectionError):
        client.voice.calls.get("call_x")


def test_timeouts(server):
    server.then(Reply(200, CALL, delay=5.0), Reply(200, CALL, delay=5.0))  # far past the 0.2 s timeout
    client = Canary("sk_test_abc", base_url=server.url, timeout=0.2, max_retries=1)
    with pytest.raises(APITimeoutError):
        client.voice.calls.get("call_abc123xyz")
    assert len(server.requests) == 2
    # per-request override: longer than this answer takes, where the client's 0.2 s is not
    server.then(Reply(200, CALL, delay=0.4))
    assert client.voice.calls.get("call_abc123xyz", request_timeout=10).id == "call_abc123xyz"


async def test_async_client_retries_the_same_way(server):
    server.then(Reply(503, UNAVAILABLE, {"Retry-After": "0"}), Reply(201, CALL))
    async with AsyncCanary("sk_test_abc", base_url=server.url) as client:
        call = await client.voice.call(**ARGS, record=True)
    assert call.id == "call_abc123xyz" and len(server.requests) == 2
    assert server.requests[0]["headers"]["idempotency-key"] == server.requests[1]["headers"]["idempotency-key"]


async def test_async_errors_are_typed(server):
    server.then(Reply(404, {"error": {"code": "not_found", "message": "no such call", "field": None}}))
    async with AsyncCanary("sk_test_abc", base_url=server.url) as client:
        with pytest.raises(NotFoundError) as err:
            await client.voice.calls.get("call_nope")
    assert err.value.code == "not_found"


def test_retry_after_parsing_and_backoff_shape():
    assert parse_retry_after("2") == 2 and parse_retry_after("0.5") == 0.5
    assert parse_retry_after("garbage") is None and parse_retry_after(None) is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") < 1
    assert backoff_delay(0, "3") == 3 and backoff_delay(0, "999") is None
    for i, (lo, hi) in enumerate([(0.25, 0.5), (0.5, 1), (1, 2), (2, 4), (4, 8), (4, 8)]):
        for _ in range(50):
            assert lo <= backoff_delay(i) <= hi
