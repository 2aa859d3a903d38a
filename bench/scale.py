"""Scale bench: the chaos driver's load and accounting on the 3-broker cluster, with 1 and
then 2 instances of every service (same offered load, same run), then 2 instances with one
instance of each service SIGKILLed in turn (back 5 s later) and one broker SIGKILLed for good.

Printed: calls completed per second of load with 1 vs 2 instances (their ratio), and after each
kill the pause until the first call placed after it completed (the rebalance and the restart
both count). Every run's invariants are checked as in the chaos run: every 2xx call ends
exactly once, no call is dialled twice, no status webhook is missing, the projections equal a
rebuild. Exit 1 when one does not hold; never crashes.

    python bench/scale.py [--calls 200] [--rate 4]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chaos.driver import Config, run  # noqa: E402


def _rate(report) -> float:
    try:
        return float(report.figures.get("calls completed per second of load", "nan"))
    except ValueError:
        return float("nan")


async def main_async(a) -> int:
    from services.ops import stack

    bootstrap = await asyncio.to_thread(stack.cluster_up, 3)
    failed: list[str] = []
    try:
        steady = {}
        for n in (1, 2):
            report = await run(Config(calls=a.calls, rate=a.rate, speed=a.speed, replicas=n, bootstrap=bootstrap,
                                      faults=False))
            steady[n] = report
            failed += [f"{n} instance(s): {f}" for f in report.failures]
        r1, r2 = _rate(steady[1]), _rate(steady[2])
        print(f"offered {a.rate:g} calls/s, {a.calls} calls, sandbox speed {a.speed:g}, 3 brokers")
        print(f"1 instance of every service:  {r1:.2f} calls completed/s")
        print(f"2 instances of every service: {r2:.2f} calls completed/s (ratio {r2 / r1:.2f} to 1 instance)")
        kills = await run(Config(calls=a.calls, rate=a.rate, speed=a.speed, replicas=2, bootstrap=bootstrap,
                                 faults_kind="scale"))
        failed += [f"with kills: {f}" for f in kills.failures]
        print(f"2 instances, one of each killed in turn and a broker: {_rate(kills):.2f} calls completed/s;"
              f" final statuses {kills.figures.get('final statuses')}")
        print("pause after each kill (until the first call placed after it completed):")
        for name, s in kills.recovery:
            print(f"  {name:44} {'never' if s is None else f'{s:.1f} s'}")
    finally:
        await asyncio.to_thread(stack.cluster_down)
    for f in failed:
        print("FAILED:", f[:2000])
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rate", type=float, default=4.0, help="POSTs per second")
    ap.add_argument("--speed", type=float, default=4.0, help="sandbox speed")
    a = ap.parse_args()
    try:
        from services.ops import stack

        stack.up()  # Postgres (and the single broker the cluster runs beside)
        return asyncio.run(main_async(a))
    except BaseException as exc:  # noqa: BLE001 - report, never a traceback
        print(f"scale bench did not complete: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
