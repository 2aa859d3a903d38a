"""The chaos run, short: about 100 calls through the HTTP API while every service is
SIGKILLed once, Postgres frozen, the broker restarted and poison injected (see
`tests/chaos/driver.py`; `bench/chaos.py` is the long run)."""

from __future__ import annotations

import pytest

from tests.chaos.driver import Config, run

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


async def test_chaos_every_fault_once_and_every_invariant_holds(stack, tmp_path):
    report = await run(Config(calls=100, rate=1.5, logdir=tmp_path / "logs"))
    print(report.text())
    assert report.ok, report.text()
