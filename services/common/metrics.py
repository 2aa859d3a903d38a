"""Prometheus metrics: what each process exposes on ``GET /metrics`` beside ``/healthz``.

Most figures are read when Prometheus scrapes, from counters the services keep anyway (a
consumer's ``Stats``, its Kafka positions, the gateway's live calls), so the hot paths pay
nothing for them. Histograms are observed where a time is measured once per batch, per
request, per delivery or per 20 ms tick, never per record.

Names follow Prometheus' conventions (``canary_`` prefix, base units, ``_total`` counters);
docs/operations.md lists them with the alerts worth having.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST

BATCH_SECONDS = Histogram(
    "canary_consumer_batch_seconds", "Time to process and commit one consumed batch", ["consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
HTTP_SECONDS = Histogram(
    "canary_http_request_seconds", "API request latency, by route template and status class",
    ["method", "route", "status"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
WEBHOOK_SECONDS = Histogram(
    "canary_webhook_delivery_seconds", "Time of one webhook delivery attempt, by outcome", ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
MEDIA_TICK_LATENESS = Histogram(
    "canary_media_tick_lateness_seconds", "How late the 20 ms media clock woke up, by carrier", ["carrier"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25))
STREAM_FRAMES = Counter(
    "canary_media_stream_frames_total", "Media stream frames by direction and fate (sent, received, dropped)",
    ["direction"])
SRTP_UNAUTHENTICATED = Counter(
    "canary_srtp_unauthenticated_total", "SRTP/SRTCP packets dropped: failed authentication or the replay check",
    ["kind"])


class _Consumers(Collector):
    """Every live consumer's counters and lag, read at scrape time."""

    def __init__(self) -> None:
        self._consumers: "weakref.WeakSet[Any]" = weakref.WeakSet()

    def add(self, consumer: Any) -> None:
        self._consumers.add(consumer)

    def collect(self) -> Iterable[Any]:
        records = CounterMetricFamily("canary_consumer_records", "Records a consumer took, by outcome",
                                      labels=["consumer", "outcome"])
        retries = CounterMetricFamily("canary_consumer_retries", "Transient failures retried", labels=["consumer"])
        lag = GaugeMetricFamily("canary_consumer_lag", "Records on the partition not yet processed (high-water"
                                " mark minus the stored position)", labels=["consumer", "topic", "partition"])
        for c in list(self._consumers):
            p = c.processor
            s = p.stats
            for outcome, n in (("handled", s.handled), ("rejected", s.rejected), ("skipped", s.skipped)):
                records.add_metric([p.name, outcome], n)
            retries.add_metric([p.name], s.retries)
            kafka = getattr(c, "consumer", None)
            if kafka is None:
                continue
            try:
                assigned = kafka.assignment()
            except Exception:  # stopped, or between assignments: no lag to tell
                continue
            for tp in assigned:
                high = kafka.highwater(tp)
                if high is None:
                    continue
                done = p.positions.get((tp.topic, tp.partition))
                if done is None:
                    continue
                lag.add_metric([p.name, tp.topic, str(tp.partition)], max(0, high - done))
        yield records
        yield retries
        yield lag


class _Gauges(Collector):
    """Gauges whose value a service computes when asked (live calls, open streams)."""

    def __init__(self) -> None:
        self._read: dict[str, tuple[str, Callable[[], float]]] = {}

    def set(self, name: str, help: str, read: Callable[[], float]) -> None:
        self._read[name] = (help, read)

    def collect(self) -> Iterable[Any]:
        for name, (help, read) in list(self._read.items()):
            g = GaugeMetricFamily(name, help)
            try:
                g.add_metric([], float(read()))
            except Exception:  # the service is stopping: leave it out of this scrape
                continue
            yield g


CONSUMERS = _Consumers()
GAUGES = _Gauges()
REGISTRY.register(CONSUMERS)
REGISTRY.register(GAUGES)


def watch_consumer(consumer: Any) -> None:
    """Expose `consumer`'s (services/common/consumer.py ``Consumer``) counters and lag."""
    CONSUMERS.add(consumer)


def gauge(name: str, help: str, read: Callable[[], float]) -> None:
    """A gauge read at scrape time (the last registration of a name wins)."""
    GAUGES.set(name, help, read)


def exposition() -> bytes:
    """The text format Prometheus scrapes."""
    return generate_latest(REGISTRY)
