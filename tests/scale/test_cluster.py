"""The 3-broker KRaft cluster (`canary-voice stack up --brokers 3`): topics replicated 3
times with min.insync.replicas=2, acks=all producers, and no record lost when one broker
stops mid-stream.

Runs beside the single broker on 9092 (ports 9192-9194 and 9292-9294, data under
.local/kafka-cluster/), which it never touches (tests/scale/conftest.py starts and stops it)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from services.common.kafka import ensure_topics, make_consumer, make_producer
from services.ops import stack
from tests.scale.conftest import BROKERS


async def _describe(bootstrap: str, topic: str) -> tuple[list[int], str]:
    """Replica counts of the topic's partitions and its min.insync.replicas.

    Asks again for a while when the answer has no partitions: the broker that answers may
    not have the new topic's metadata yet (a fresh topic, not a lost one)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
    await admin.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            [desc] = await admin.describe_topics([topic])
            if desc["partitions"] or loop.time() > deadline:
                break
            await asyncio.sleep(0.5)
        replicas = [len(p["replicas"]) for p in desc["partitions"]]
        [res] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        configs = {c[0]: c[1] for c in res.resources[0][4]}
        return replicas, configs["min.insync.replicas"]
    finally:
        await admin.close()


async def _send(producer, topic: str, keys: list[str]) -> None:
    for k in keys:
        await producer.send_and_wait(topic, k.encode(), key=k.encode())


async def _consume_all(bootstrap: str, topic: str, want: set[str], timeout: float = 60.0) -> set[str]:
    consumer = make_consumer(topic, group_id=f"scale-{uuid.uuid4().hex[:8]}", bootstrap=bootstrap,
                             request_timeout_ms=30_000, session_timeout_ms=30_000)
    await consumer.start()
    seen: set[str] = set()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not want <= seen and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                seen.update(r.value.decode() for r in records)
    finally:
        await consumer.stop()
    return seen


async def test_replicated_topics_survive_one_broker_down(cluster):
    prefix = f"scale{uuid.uuid4().hex[:6]}."
    created = await ensure_topics(cluster, partitions=3, prefix=prefix, replication=BROKERS)
    assert created, "no topics were created on the cluster"
    topic = created[0]
    for name in created:
        replicas, min_isr = await _describe(cluster, name)
        assert replicas and all(r == 3 for r in replicas), (name, replicas)
        assert min_isr == "2", (name, min_isr)

    producer = make_producer(cluster, request_timeout_ms=30_000, retry_backoff_ms=500)
    assert producer._sender._acks == -1, "the service producers must use acks=all"
    await producer.start()
    try:
        before = [f"before-{i}" for i in range(100)]
        await _send(producer, topic, before)

        # A controlled shutdown of one broker (also one of the three controllers): leaders
        # move, the quorum keeps 2 of 3, acks=all writes still find two in-sync copies.
        await asyncio.to_thread(stack.cluster_node_down, 2)
        after = [f"after-{i}" for i in range(100)]
        await asyncio.wait_for(_send(producer, topic, after), 90)
    finally:
        await producer.stop()

    try:
        want = set(before) | set(after)
        seen = await _consume_all(cluster, topic, want)
        assert want - seen == set(), f"{len(want - seen)} records lost, e.g. {sorted(want - seen)[:5]}"
    finally:
        await asyncio.to_thread(stack.cluster_up, BROKERS)  # node 2 back, for the next test
