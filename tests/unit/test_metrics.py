"""Prometheus metrics (services/common/metrics.py): what `GET /metrics` on a service's health
port says after real work: a consumer's records by outcome and its lag, batch and request
latencies, the media clock's lateness. Parsed with prometheus-client's own parser."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.common import metrics
from services.common.health import serve_health
from tests.unit.test_consumer import POISON, RINGING, Handler, Store, msgs, processor, run


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape() -> dict[tuple[str, tuple], float]:
    server = await serve_health(0, "unit")
    try:
        port = server.sockets[0].getsockname()[1]
        async with httpx.AsyncClient() as client:
            r = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        return samples(r.text)
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class TP:
    topic: str
    partition: int

    def __hash__(self):
        return hash((self.topic, self.partition))


@dataclass
class FakeKafka:
    """The two calls the lag gauge makes on aiokafka's consumer."""

    high: dict = field(default_factory=dict)

    def assignment(self):
        return set(self.high)

    def highwater(self, tp):
        return self.high[tp]


@dataclass(eq=False)  # hashable by identity, as services' consumers are
class Watched:
    processor: object
    consumer: FakeKafka


async def test_a_consumers_records_lag_and_batch_time_are_scraped():
    store = Store()
    p, _ = processor(store, Handler(store))
    p.name = "unit-metrics"
    good = [RINGING() for _ in range(5)]
    await run(p, msgs(*good, POISON["garbage bytes"], partition=2, start=10))
    watched = Watched(p, FakeKafka({TP(next(iter(p.sources)), 2): 40}))
    metrics.watch_consumer(watched)
    got = await scrape()
    c = ("consumer", "unit-metrics")
    assert got[("canary_consumer_records_total", (c, ("outcome", "handled")))] == 5
    assert got[("canary_consumer_records_total", (c, ("outcome", "rejected")))] == 1
    topic = next(iter(p.sources))
    assert got[("canary_consumer_lag", (c, ("partition", "2"), ("topic", topic)))] == 40 - 16
    assert got[("canary_consumer_batch_seconds_count", (c,))] == 1


async def test_media_clock_lateness_is_observed_per_tick():
    from services.telephony.sandbox import FrameClock

    before = (await scrape()).get(("canary_media_tick_lateness_seconds_count", (("carrier", "sandbox"),)), 0)

    class Session:
        _ended = False
        ticks = 0

        def tick(self, frames):
            self.ticks += frames

    clock, s = FrameClock(speed=1.0), Session()
    clock.add(s)
    while s.ticks < 10:
        await asyncio.sleep(0.02)
    clock.discard(s)
    after = (await scrape())[("canary_media_tick_lateness_seconds_count", (("carrier", "sandbox"),))]
    assert after - before >= 10


async def test_api_requests_are_timed_by_route_template_not_by_path():
    from fastapi import FastAPI

    from services.api.metrics_middleware import RequestMetrics

    app = FastAPI()
    app.add_middleware(RequestMetrics)

    @app.get("/v1/voice/calls/{call_id}")
    async def get_call(call_id: str):
        return {"id": call_id}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for i in range(3):
            assert (await client.get(f"/v1/voice/calls/call_{i}")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404
    got = await scrape()
    route = (("method", "GET"), ("route", "/v1/voice/calls/{call_id}"), ("status", "2xx"))
    assert got[("canary_http_request_seconds_count", route)] >= 3
    assert got[("canary_http_request_seconds_count", (("method", "GET"), ("route", "unmatched"),
                                                        ("status", "4xx")))] >= 1
    assert not any("call_1" in str(k) for k in got)  # never a series per call
