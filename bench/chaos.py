"""The chaos run, long: the whole stack as processes, a steady load of sandbox calls through
the HTTP API, every fault injected once while it runs (tests/chaos/driver.py).

    python bench/chaos.py [--calls 1000] [--rate 4] [--seed N]

Prints the figures and the invariants; exits 1 if one failed (it never crashes)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chaos.driver import Config, run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=4.0, help="POSTs per second")
    ap.add_argument("--speed", type=float, default=4.0, help="sandbox speed")
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    try:
        from services.ops import stack

        stack.up()
        report = asyncio.run(run(Config(calls=a.calls, rate=a.rate, speed=a.speed, seed=a.seed)))
    except BaseException as exc:  # noqa: BLE001 - report, never a traceback
        print(f"chaos run did not complete: {type(exc).__name__}: {exc}")
        return 1
    print(report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
