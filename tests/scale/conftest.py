"""The 3-broker KRaft cluster for the scale tests, beside the single broker on 9092 (ports
9192-9194 and 9292-9294, data under .local/kafka-cluster/), which it never touches; stopped
at the end of the session's scale tests, also on failure."""

from __future__ import annotations

import pytest

from services.ops import stack

BROKERS = 3


@pytest.fixture(scope="package")
def cluster():
    try:
        bootstrap = stack.cluster_up(BROKERS, wait_s=150.0)
    except Exception as exc:  # noqa: BLE001 - a clear reason, then the cleanup below
        stack.cluster_down()
        pytest.fail(f"the 3-broker cluster could not start: {exc}", pytrace=False)
    try:
        yield bootstrap
    finally:
        stack.cluster_down()
