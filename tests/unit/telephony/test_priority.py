"""The gateway's CPU priority, checked against what the OS reports (in a child process, so
the test runner's own scheduling is never touched)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from services.common.config import ConfigError, settings

PROBE = r"""
import json, os, sys, threading
from services.telephony.priority import raise_priority
before = (os.sched_getscheduler(0), os.nice(0))
got = raise_priority(sys.argv[1])
seen = {}
t = threading.Thread(target=lambda: seen.update(policy=os.sched_getscheduler(0)))
t.start(); t.join()
print(json.dumps({"got": got, "before": before, "policy": os.sched_getscheduler(0), "nice": os.nice(0),
                  "thread_policy": seen["policy"], "RR": os.SCHED_RR, "OTHER": os.SCHED_OTHER}))
"""


def probe(wanted: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, wanted], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout)


def test_realtime_is_what_the_os_reports_and_later_threads_are_not_real_time():
    r = probe("realtime")
    assert r["got"] in ("realtime", "high", "normal")
    if r["got"] == "realtime":
        assert r["policy"] & ~0x40000000 == r["RR"]  # SCHED_RESET_ON_FORK is or-ed into the policy
        assert r["thread_policy"] == r["OTHER"]  # a worker thread does not inherit it
    elif r["got"] == "high":  # no privilege for SCHED_RR
        assert r["policy"] == r["OTHER"] and r["nice"] <= -10
    else:  # no privilege at all: unchanged
        assert (r["policy"], r["nice"]) == tuple(r["before"])


def test_normal_changes_nothing():
    r = probe("normal")
    assert r["got"] == "normal" and (r["policy"], r["nice"]) == tuple(r["before"])


def test_an_unknown_priority_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("CANARY_MEDIA_PRIORITY", "urgent")
    with pytest.raises(ConfigError, match="CANARY_MEDIA_PRIORITY"):
        settings()
