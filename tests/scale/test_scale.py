"""The scale run, short: the chaos run's load and accounting (tests/chaos/driver.py) on the
3-broker cluster with two instances of every service; mid-load, one instance of each service
is SIGKILLed (back 5 s later) and one broker SIGKILLed for good, all in the same instant. Every 2xx call must still end
exactly once, no call be dialled twice, no status webhook go missing, and the projections
equal a rebuild. `bench/scale.py` is the long run, with 1 vs 2 instances."""

from __future__ import annotations

import pytest

from tests.chaos.driver import Config, run

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


async def test_two_of_everything_survive_an_instance_of_each_and_a_broker_killed(stack, cluster, tmp_path):
    report = await run(Config(calls=60, rate=1.5, replicas=2, bootstrap=cluster, faults_kind="scale-at-once",
                              logdir=tmp_path / "logs"))
    print(report.text())
    assert report.ok, report.text()
    assert report.figures["faults injected"] == 1  # one instance of each of the 9 services and a broker, at once
    [(what, recovered)] = report.recovery
    assert what.count("#1") == 9 and "broker" in what and recovered is not None
