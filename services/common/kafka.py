"""Producer and consumer helpers on aiokafka, tuned for this service."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from events import Envelope, encode, topics
from events.envelope import utc_now
from services.common.config import settings


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the producers' default partitioner sends `key` to (murmur2, as Kafka's Java client)."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


def key_on(mint: Any, owned: set[int] | frozenset[int], partitions: int, tries: int = 256) -> str:
    """A key from `mint()` that lands on one of the `owned` partitions (of `partitions`).

    A consumer that must receive the messages about something it creates (a gateway holding an
    incoming SIP call until its answer instruction) names it so; with nothing owned (not yet
    assigned) or out of tries, any key `mint()` gives. Expected tries: partitions / len(owned).
    """
    key = mint()
    if not owned or partitions <= 0:
        return key
    for _ in range(tries):
        if partition_of(key.encode(), partitions) in owned:
            return key
        key = mint()
    return key


def known_partition_count(consumer: Any, topic: str) -> int:
    """How many partitions ``topic`` has, as an aiokafka consumer's cluster metadata already
    knows it, without a request (0: not known yet, or the consumer is stopped); see
    ``topic_partitions`` for a fresh answer."""
    try:
        return len(consumer._client.cluster.partitions_for_topic(topic) or ())
    except Exception:  # noqa: BLE001 - stopped or between assignments
        return 0


def make_producer(bootstrap: str | None = None, **overrides: Any) -> AIOKafkaProducer:
    """Producer: acks=all, small linger for batching, order kept per partition.

    Not Kafka-idempotent, on purpose: after a broker restart an idempotent producer can
    fail every send with OutOfOrderSequenceNumber, a non-retriable error, until it is
    rebuilt (found by the chaos run: accepted calls were dead-lettered and a worker
    crashed). What idempotence adds, no duplicate on a retried send, every consumer here
    has anyway (events are deduplicated by their derived ids), and order per partition
    holds without it: aiokafka keeps one request in flight per broker.

    linger_ms=5 trades at most 5 ms of latency for batches that cut per-message cost
    several-fold under load; a lone message still leaves within 5 ms.
    """
    opts: dict[str, Any] = dict(
        bootstrap_servers=bootstrap or settings().kafka_bootstrap,
        enable_idempotence=False,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=10_000,
        client_id="canary-voice",
    )
    opts.update(overrides)
    return AIOKafkaProducer(**opts)


def make_consumer(*topic_names: str, group_id: str | None, bootstrap: str | None = None,
                  **overrides: Any) -> AIOKafkaConsumer:
    """Consumer with manual commits (the caller decides when work is durable)."""
    opts: dict[str, Any] = dict(
        bootstrap_servers=bootstrap or settings().kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=2000,
        fetch_max_wait_ms=50,
        isolation_level="read_committed",
    )
    opts.update(overrides)
    return AIOKafkaConsumer(*topic_names, **opts)


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """Partition ids of `topic` (a metadata request first: a fresh client knows none)."""
    cluster = await consumer._client.fetch_all_metadata()  # no public call returns partitions
    parts = cluster.partitions_for_topic(topic)
    if not parts:
        raise RuntimeError(f"topic {topic} does not exist")
    return parts


TYPE_HEADER = "type"


def type_headers(env: Envelope) -> list[tuple[str, bytes]]:
    """The record headers every envelope is sent with: its type, so a consumer skips the
    types it does not take without decoding them (services/common/consumer.py Source)."""
    return [(TYPE_HEADER, env.type.encode())]


async def publish(producer: AIOKafkaProducer, topic: str, env: Envelope) -> None:
    """Send one envelope keyed by call_id (so a call's messages stay in order) and wait for the ack."""
    await producer.send_and_wait(topic, encode(env), key=env.call_id.encode(), headers=type_headers(env))


async def publish_many(producer: AIOKafkaProducer, topic: str, envs: list[Envelope]) -> None:
    """Send many envelopes, letting the producer batch them, then wait for every ack."""
    futs = [await producer.send(topic, encode(e), key=e.call_id.encode(), headers=type_headers(e)) for e in envs]
    if futs:
        await asyncio.gather(*futs)


# A DLQ record carries the original bytes; beyond this they are cut (and flagged), so a
# rejected message near the broker's size limit still fits in its DLQ record.
DLQ_RAW_MAX = 256 * 1024


def dlq_record(reason: str, code: str, *, source_topic: str, partition: int | None = None,
               offset: int | None = None, raw: bytes | None = None, type: str | None = None,
               errors: Any = None, consumer: str | None = None) -> bytes:
    """A voice.dlq record: why it was rejected, by which consumer, where it came from, the original bytes."""
    raw = raw or b""
    kept = raw[:DLQ_RAW_MAX]
    return orjson.dumps({
        "reason": reason,
        "code": code,
        "type": type,
        "errors": list(errors or []),
        "consumer": consumer,
        "source": {"topic": source_topic, "partition": partition, "offset": offset},
        "raw_base64": base64.b64encode(kept).decode(),
        "raw_text": kept[:4096].decode("utf-8", "replace"),
        "raw_size": len(raw),
        "raw_truncated": len(kept) < len(raw),
        "rejected_at": utc_now(),
    }, default=str)


def dlq_key(topic: str, partition: int | None, offset: int | None) -> bytes:
    """Key of a DLQ record: the source position (a reader dedupes a rare re-send by it)."""
    return f"{topic}:{partition}:{offset}".encode()


def min_insync_for(replication: int) -> int:
    """min.insync.replicas for a replication factor: one copy may be down (2 of 3), at least 1."""
    return max(1, replication - 1)


async def ensure_topics(bootstrap: str | None = None, partitions: int | None = None,
                        prefix: str | None = None, replication: int | None = None,
                        min_insync: int | None = None) -> list[str]:
    """Create the service topics if missing (explicit settings); returns those created.

    Replication comes from CANARY_KAFKA_REPLICATION (1: the single local broker) unless
    given; with more than one copy each topic gets `min.insync.replicas` (default
    replication - 1), so an acks=all write survives one broker down but never lands on
    one copy only."""
    s = settings()
    rf = replication or s.kafka_replication
    isr = min_insync or s.kafka_min_insync or min_insync_for(rf)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap or s.kafka_bootstrap, request_timeout_ms=10_000)
    await admin.start()
    created = []
    try:
        existing = set(await admin.list_topics())
        extra = {"min.insync.replicas": str(isr)} if rf > 1 else {}
        wanted = [NewTopic(t.name, partitions or s.partitions, rf, topic_configs={**t.config, **extra})
                  for t in topics.topic_specs(prefix) if t.name not in existing]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass
            created = [t.name for t in wanted]
            await _until_led(admin, created, partitions or s.partitions)
    finally:
        await admin.close()
    return created


async def _until_led(admin: AIOKafkaAdminClient, names: list[str], partitions: int,
                     timeout: float = 30.0) -> None:
    """Wait until every new topic's partitions have a leader in the metadata the broker we
    asked serves: creation returns once the controller has it, and on a cluster another
    broker may still answer with no partitions (a producer or describe right after would
    see the topic as missing). Bounded: after `timeout` it returns and callers retry."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = list(names)
    while pending and loop.time() < deadline:
        try:
            described = await admin.describe_topics(pending)
        except Exception:
            described = []
        ready = {d["topic"] for d in described
                 if not d.get("error_code") and len(d.get("partitions") or []) == partitions
                 and all(p.get("leader", -1) >= 0 for p in d["partitions"])}
        pending = [n for n in pending if n not in ready]
        if pending:
            await asyncio.sleep(0.2)


async def broker_ready(bootstrap: str | None = None, timeout: float = 3.0, brokers: int = 1) -> bool:
    """True when the cluster answers a real metadata request naming at least `brokers` brokers."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap or settings().kafka_bootstrap,
                                request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        info = await asyncio.wait_for(admin.describe_cluster(), timeout)
        return len(info.get("brokers", [])) >= brokers
    except Exception:
        return False
    finally:
        try:
            await admin.close()
        except Exception:
            pass
