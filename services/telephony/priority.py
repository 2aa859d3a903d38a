"""The gateway's CPU priority: its 20 ms media clock must not wait behind a neighbour's work.

Media servers do the same (FreeSWITCH's packaged unit runs it with ``CPUSchedulingPolicy=rr``,
Asterisk has ``-p``): on a busy machine a normal process is descheduled for tens of
milliseconds, which is a frame late on every call it carries. Measured with 100 media
streams beside a full test run (bench/RESULTS.md): the frame clock's p99 lateness went from
hundreds of milliseconds to a few.

``realtime`` asks for ``SCHED_RR`` for the gateway's event-loop thread only: threads and
processes it starts later (a thread pool's workers) are reset to normal scheduling
(``SCHED_RESET_ON_FORK``), so only the loop that paces media outranks the machine, and the
kernel's real-time throttling still keeps a share of each core for everyone else. Without
the privilege (``CAP_SYS_NICE``) it falls back to ``high`` (nice -10), then to ``normal``,
and says what it got.
"""

from __future__ import annotations

import os

RT_PRIORITY = 10  # low among real-time priorities: the kernel's own threads keep theirs
HIGH_NICE = -10


def raise_priority(wanted: str) -> str:
    """Ask the OS for ``wanted`` ("realtime" | "high" | "normal"); returns what was obtained."""
    if wanted == "realtime":
        try:
            os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(RT_PRIORITY))
            return "realtime"
        except (OSError, AttributeError):  # no privilege, or not Linux
            wanted = "high"
    if wanted == "high":
        try:
            if os.nice(0) > HIGH_NICE:
                os.nice(HIGH_NICE - os.nice(0))
            return "high"
        except OSError:
            pass
    return "normal"
