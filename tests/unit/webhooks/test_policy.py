"""Retry schedule and fairness lanes (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from services.webhooks.policy import Lanes, WebhookSettings, backoff, endpoint_of, is_success


def test_backoff_is_exponential_with_bounded_jitter():
    rng = random.Random(7)
    for attempt in range(1, 12):
        nominal = min(300.0, 2.0 * 2 ** (attempt - 1))
        for _ in range(50):
            d = backoff(attempt, 2.0, 300.0, rng)
            assert nominal / 2 <= d <= nominal


def test_backoff_jitter_spreads_retries():
    rng = random.Random(1)
    assert len({round(backoff(3, 1.0, 60, rng), 6) for _ in range(20)}) == 20


def test_success_codes():
    assert is_success(200) and is_success(204)
    assert not any(is_success(c) for c in (301, 302, 400, 404, 429, 500, 503))


def test_endpoint_of():
    assert endpoint_of("https://Hooks.Example.com/a?b=1") == "https://hooks.example.com:443"
    assert endpoint_of("http://127.0.0.1:8000/x") == "http://127.0.0.1:8000"


@dataclass
class D:
    event_id: str
    account_id: str
    url: str


def settings(**kw) -> WebhookSettings:
    base = dict(max_attempts=3, backoff_base=1, backoff_max=10, timeout=5, concurrency=4, per_account=3,
                per_endpoint=2, slow_ms=1000, slow_lane=1, poll_interval=0.1)
    base.update(kw)
    return WebhookSettings(**base)


def test_caps_per_account_and_endpoint():
    lanes = Lanes(settings())
    cands = [D(f"e{i}", "acct_a", f"https://h{i % 2}.example/") for i in range(6)] + [D("x", "acct_b", "https://o.example/")]
    chosen = lanes.choose(cands)
    # acct_a: at most 3, h0/h1: at most 2 each; acct_b still gets its slot
    assert [d.event_id for d in chosen] == ["e0", "e1", "e2", "x"]
    for d in chosen:
        lanes.acquire(d)
    assert lanes.free() == 1  # fast lane full (4/4), slow lane free
    for d in chosen:
        lanes.release(d, 10)
    assert lanes.free() == 5 and not lanes.by_account and not lanes.by_endpoint


def test_slow_endpoint_only_uses_the_slow_lane():
    lanes = Lanes(settings())
    slow = D("s0", "acct_slow", "https://slow.example/")
    lanes.acquire(slow)
    lanes.release(slow, 2000)  # 2 s: classified slow
    assert lanes.is_slow("https://slow.example:443")
    cands = [D(f"s{i}", f"acct_s{i}", "https://slow.example/") for i in range(1, 4)] + \
            [D(f"f{i}", f"acct_f{i}", f"https://f{i}.example/") for i in range(4)]
    chosen = [d.event_id for d in lanes.choose(cands)]
    assert chosen == ["s1", "f0", "f1", "f2", "f3"]  # one slow-lane slot, the fast lane untouched
