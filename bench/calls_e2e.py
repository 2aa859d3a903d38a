"""Whole sandbox calls through the real stack: dial latency and calls completed per second.

    python bench/calls_e2e.py [--calls 1000] [--rate 100]

Starts the API, orchestrator, gateway, TTS worker and projector as processes on their
own topics, POSTs calls at a steady rate, and follows voice.call.events. Dial latency is
POST sent -> call.ringing seen (the sandbox rings 50 ms of simulated network time after
the dial, scaled by CANARY_SANDBOX_SPEED). Baseline, measured in the same run: one
Kafka hop (produce -> consume on the same topic), since a call needs several in a row.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import run_reporting  # noqa: E402
from bench._stack import CallStack, cpu_s, pct  # noqa: E402

BODY = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Your code is 1 2 3 4."}}


async def main(n: int, rate: float, port: int) -> int:
    async with CallStack(rate=rate, port=port, env={"CANARY_SANDBOX_SPEED": "10"}) as s:
        await s.warm_up(BODY)
        watched = s.watched()
        cpu0 = {k: cpu_s(pid) for k, pid in watched.items()}
        posted = await s.post_at_rate(BODY, n, rate)
        backlog = await s.wait_ended(posted.sent, 120)
        cpu = {k: cpu_s(pid) - cpu0[k] for k, pid in watched.items()}
        sent, base, t_start = posted.sent, s.base, posted.t_start
        lat = [s.ringing[c] - t for c, t in sent.items() if c in s.ringing]
        done = [s.ended[c] for c in sent if c in s.ended]
        span = (max(done) - t_start) if done else float("nan")
        print(f"calls: {n} submitted at {rate:.0f}/s, {len(sent)} accepted, {posted.failures} refused or failed "
              f"({posted.error_text()}), {len(done)} ended")
        achieved = posted.achieved
        print(f"achieved: {achieved:.1f} accepted calls/s ({achieved / rate:.2f} of the asked rate); "
              f"backlog at the end: {backlog} accepted calls not ended")
        print(f"baseline one Kafka hop: p50 {pct(base, .5):.1f} ms  p99 {pct(base, .99):.1f} ms")
        print(f"dial latency POST -> call.ringing: p50 {pct(lat, .5):.1f} ms  p99 {pct(lat, .99):.1f} ms "
              f"(mean {statistics.mean(lat) * 1000 if lat else float('nan'):.1f} ms)")
        print(f"ratio dial p50 / Kafka hop p50: {pct(lat, .5) / pct(base, .5):.1f}x;  "
              f"p99: {pct(lat, .99) / pct(base, .99):.1f}x")
        print(f"calls completed/s: {len(done) / span:.1f}" if done else "calls completed/s: none ended")

        def stage(name, fn):
            xs = [fn(c, st) for c, st in s.stages.items() if c in sent and len(st) == 3]
            if xs:
                print(f"  {name}: p50 {pct(xs, .5):.1f} ms  p99 {pct(xs, .99):.1f} ms")
        print("stages (service timestamps):")
        if posted.answered:
            print(f"  POST answered (API, as the client sees it): p50 {pct(posted.answered, .5):.1f} ms  "
                  f"p99 {pct(posted.answered, .99):.1f} ms")
        stage("POST -> call.queued decided (API + orchestrator)", lambda c, st: st["call.queued"][0] - sent[c])
        stage("dial.requested in Kafka -> call.ringing (gateway + sandbox)",
              lambda c, st: st["call.ringing"][0] - st["dial.requested"][1])
        if sent:
            total = sum(cpu.values())
            print(f"CPU per call: {total / len(sent) * 1000:.1f} ms across the processes ("
                  + ", ".join(f"{k} {v / len(sent) * 1000:.1f}" for k, v in cpu.items()) + ")")
        behind = []
        if posted.failures:
            behind.append(f"{posted.failures} of {n} POSTs not accepted")
        if backlog:
            behind.append(f"{backlog} accepted calls did not end within 120 s")
        if achieved < 0.95 * rate:
            behind.append(f"accepted {achieved:.1f}/s of {rate:.0f}/s asked ({achieved / rate:.0%})")
        print("BEHIND: " + "; ".join(behind) if behind else "OK: every call accepted and ended at the asked rate")
        return 1 if behind else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--port", type=int, default=18080)
    a = ap.parse_args()
    run_reporting(main(a.calls, a.rate, a.port))
