"""Delivery policy: the retry schedule and lane bookkeeping (pure); the knobs are `WebhookSettings`."""

from __future__ import annotations

import random
from urllib.parse import urlsplit

# The knobs (CANARY_WEBHOOK_*) are a section of the service settings: settings().webhooks.
from services.common.config import WebhookSettings

__all__ = ["Lanes", "WebhookSettings", "backoff", "endpoint_of", "is_success"]


def backoff(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    Exponential (base * 2^(n-1), capped) with "equal jitter": a random point in the
    upper half, so retries of many failing deliveries spread out but never come
    back sooner than half the nominal delay.
    """
    nominal = min(cap, base * (2 ** max(0, attempt - 1)))
    return nominal * (0.5 + 0.5 * (rng or random).random())


def endpoint_of(url: str) -> str:
    """scheme://host:port, the unit of per-endpoint fairness."""
    p = urlsplit(url)
    port = p.port or (443 if p.scheme == "https" else 80)
    return f"{p.scheme}://{(p.hostname or '').lower()}:{port}"


def is_success(status_code: int) -> bool:
    """2xx means delivered; anything else (redirects included) is retried."""
    return 200 <= status_code < 300


class Lanes:
    """In-flight bookkeeping for fairness (pure; the dispatcher is its only user).

    Two pools of slots: the fast lane (`concurrency`) and a small slow lane for
    endpoints whose recent latency (EWMA) is above `slow_ms`. On top, caps per account
    and per endpoint. So a customer whose endpoint takes 2 s (or times out) holds at
    most a few slow-lane slots while every other account keeps the fast lane.
    """

    ALPHA = 0.3

    def __init__(self, s: WebhookSettings):
        self.s = s
        self.fast = 0
        self.slow = 0
        self.by_account: dict[str, int] = {}
        self.by_endpoint: dict[str, int] = {}
        self.latency: dict[str, float] = {}  # endpoint -> EWMA ms
        self._lane: dict[str, bool] = {}  # event_id -> slow?

    def is_slow(self, endpoint: str) -> bool:
        return self.latency.get(endpoint, 0.0) > self.s.slow_ms

    def free(self) -> int:
        return max(0, self.s.concurrency - self.fast) + max(0, self.s.slow_lane - self.slow)

    def in_flight(self) -> int:
        return self.fast + self.slow

    def choose(self, candidates: list) -> list:
        """The candidates (objects with account_id, url, event_id) that fit now, in order."""
        fast, slow = self.fast, self.slow
        acc = dict(self.by_account)
        ep = dict(self.by_endpoint)
        out = []
        for d in candidates:
            e = endpoint_of(d.url)
            if acc.get(d.account_id, 0) >= self.s.per_account or ep.get(e, 0) >= self.s.per_endpoint:
                continue
            if self.is_slow(e):
                if slow >= self.s.slow_lane:
                    continue
                slow += 1
            else:
                if fast >= self.s.concurrency:
                    continue
                fast += 1
            acc[d.account_id] = acc.get(d.account_id, 0) + 1
            ep[e] = ep.get(e, 0) + 1
            out.append(d)
        return out

    def acquire(self, d) -> None:
        e = endpoint_of(d.url)
        slow = self.is_slow(e)
        self._lane[d.event_id] = slow
        if slow:
            self.slow += 1
        else:
            self.fast += 1
        self.by_account[d.account_id] = self.by_account.get(d.account_id, 0) + 1
        self.by_endpoint[e] = self.by_endpoint.get(e, 0) + 1

    def release(self, d, latency_ms: float | None) -> None:
        e = endpoint_of(d.url)
        if self._lane.pop(d.event_id, False):
            self.slow -= 1
        else:
            self.fast -= 1
        for table, key in ((self.by_account, d.account_id), (self.by_endpoint, e)):
            table[key] -= 1
            if table[key] <= 0:
                del table[key]
        if latency_ms is not None:
            old = self.latency.get(e)
            self.latency[e] = latency_ms if old is None else self.ALPHA * latency_ms + (1 - self.ALPHA) * old
