"""Capacity: ramp the call rate until dial latency p99 passes 1 s or calls stop ending; print the knee.

    python bench/capacity.py                        # sandbox calls, 10 -> 200 calls/s
    python bench/capacity.py --carrier sip          # SIP calls to a SIPp UAS
    python bench/capacity.py --rates 20,40,80 --step-seconds 20

The whole stack runs as processes (API, orchestrator, gateway, TTS worker, projector, on
their own topics; the broker and Postgres of `canary-voice stack up`). Each step POSTs
calls at one rate for --step-seconds, then waits for them to end. Calls run at real speed
(the sandbox at speed 1; SIP calls play their prompt over RTP to a sink), so each holds a
few seconds and concurrency builds up: rate x call length.

A step holds when every POST was accepted at >= 95 % of the asked rate, every accepted call
ended within --grace seconds after the last POST, and dial latency (POST -> call.ringing)
p99 <= --max-p99-ms (1000). The knee is the last step that held: its calls/s and the most
calls alive at once (ringing -> ended, service timestamps). The ramp stops at the first
step that did not hold, and prints how far behind it was.

Baseline, measured in the same run: one Kafka hop (a call needs several in a row); the
dial latency at the knee is printed as a ratio to it, and the knee as a ratio to --target
calls/s (100, the scale issue's "100 calls/s sustained"). Exit 0 when the knee reaches the
target, 1 when it does not (by how much is printed), 2 when the bench could not run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import run_reporting  # noqa: E402
from bench._stack import CallStack, cpu_s, pct  # noqa: E402
from services.lib import trunks  # noqa: E402

BODY = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Your code is 1 2 3 4."}}
UAS_SCENARIO = ROOT / "tests/interop/sip/scenarios/uas_answer.xml"


def most_alive(spans: list[tuple[float, float]]) -> int:
    """The most intervals open at one time."""
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    best = cur = 0
    for _, d in edges:
        cur += d
        best = max(best, cur)
    return best


def free_udp(even: bool = False) -> socket.socket:
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        if not even or s.getsockname()[1] % 2 == 0:
            return s
        s.close()


class SippUas:
    """A SIPp UAS answering every call (no call limit) until stopped; our RTP goes to a bound
    socket nobody reads (the kernel drops what overflows it: no ICMP back to the gateway)."""

    def __init__(self, workdir: Path) -> None:
        self.sink = free_udp(even=True)
        self.sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        probe = free_udp()
        self.port = probe.getsockname()[1]
        probe.close()
        media = free_udp(even=True)
        media_port = media.getsockname()[1]
        media.close()
        self.proc = subprocess.Popen(
            ["sipp", "-sf", str(UAS_SCENARIO), "-i", "127.0.0.1", "-p", str(self.port), "-mi", "127.0.0.1",
             "-mp", str(media_port), "-set", "rtp_port", str(self.sink.getsockname()[1]), "-nostdin",
             "-max_socket", "4096"],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.sink.close()


async def main(a: argparse.Namespace) -> int:
    rates = [float(r) for r in a.rates.split(",")]
    sip = a.carrier == "sip"
    env = {"CANARY_SANDBOX_SPEED": "1"}
    uas = None
    if sip:
        if shutil.which("sipp") is None:
            print("BEHIND: sipp is required for --carrier sip (Debian package sip-tester)")
            return 2
        env.update(CANARY_SIP_PORT="0", CANARY_SIP_BIND="127.0.0.1", CANARY_ALLOW_PRIVATE_URLS="1")
        os.environ["CANARY_ALLOW_PRIVATE_URLS"] = "1"  # this process stores the trunk (SIPp on loopback)
        uas = SippUas(Path(tempfile.mkdtemp(prefix="bench-capacity-")))
    knee: dict | None = None
    failed: dict | None = None
    try:
        async with CallStack(rate=max(rates), port=a.port, key_mode="live" if sip else "test", env=env) as s:
            if uas is not None:
                await trunks.set_trunk(s.conn, s.account["id"], host="127.0.0.1", port=uas.port)
            await s.warm_up(BODY)
            base = s.base
            print(f"{a.carrier} calls; baseline one Kafka hop: p50 {pct(base, .5):.1f} ms  "
                  f"p99 {pct(base, .99):.1f} ms", flush=True)
            watched = s.watched()
            for rate in rates:
                n = max(1, int(rate * a.step_seconds))
                cpu0 = {k: cpu_s(pid) for k, pid in watched.items()}
                posted = await s.post_at_rate(BODY, n, rate)
                left = await s.wait_ended(posted.sent, a.grace)
                cpu = sum(cpu_s(pid) - cpu0[k] for k, pid in watched.items())
                sent = posted.sent
                lat = [s.ringing[c] - t for c, t in sent.items() if c in s.ringing]
                spans = [(s.ringing[c], s.ended_at[c]) for c in sent if c in s.ringing and c in s.ended_at]
                staged = {c: s.stages[c] for c in sent if len(s.stages.get(c, {})) == 3}
                queued = [x["call.queued"][0] - sent[c] for c, x in staged.items()]
                gw = [x["call.ringing"][0] - x["dial.requested"][1] for x in staged.values()]
                ok_end = sum(1 for c in sent if s.ended_type.get(c) == "call.completed")
                step = dict(rate=rate, n=n, accepted=len(sent), failures=posted.failures, left=left,
                            achieved=posted.achieved, p50=pct(lat, .5), p99=pct(lat, .99),
                            alive=most_alive(spans), completed=ok_end,
                            cpu_ms=cpu / len(sent) * 1000 if sent else float("nan"),
                            errors=posted.error_text())
                why = []
                if posted.failures:
                    why.append(f"{posted.failures} POSTs not accepted ({step['errors']})")
                if posted.achieved < 0.95 * rate:
                    why.append(f"accepted {posted.achieved:.1f}/s of {rate:.0f}/s")
                if left:
                    why.append(f"{left} of {len(sent)} calls did not end within {a.grace:.0f} s")
                if not step["p99"] <= a.max_p99_ms:
                    why.append(f"dial p99 {step['p99']:.0f} ms > {a.max_p99_ms:.0f} ms")
                print(f"  {rate:6.0f} calls/s x {a.step_seconds:.0f} s: {len(sent)}/{n} accepted "
                      f"({posted.achieved:.1f}/s), {len(sent) - left} ended ({ok_end} completed), "
                      f"at most {step['alive']} alive; dial p50 {step['p50']:.0f} ms p99 {step['p99']:.0f} ms; "
                      f"(POST -> queued p50 {pct(queued, .5):.0f}, dial.requested -> ringing p50 {pct(gw, .5):.0f}); "
                      f"CPU {step['cpu_ms']:.1f} ms/call" + (f"  -> did not hold: {'; '.join(why)}" if why else ""),
                      flush=True)
                if why:
                    failed = {**step, "why": why}
                    break
                knee = step
    finally:
        if uas is not None:
            uas.stop()
    if knee is None:
        print(f"BEHIND: not even the first step ({rates[0]:.0f} calls/s) held: {'; '.join(failed['why'])}")
        return 1
    hop99 = pct(base, .99)
    print(f"knee: {knee['rate']:.0f} calls/s with at most {knee['alive']} calls alive at once; dial p99 there "
          f"{knee['p99']:.0f} ms ({knee['p99'] / hop99:.1f}x one Kafka hop's p99); "
          f"{'the next step did not hold' if failed else 'every step held (the knee is higher)'}")
    print(f"ratio knee / target {a.target:.0f} calls/s: {knee['rate'] / a.target:.2f}")
    if knee["rate"] < a.target:
        print(f"BEHIND: the knee is {knee['rate']:.0f} calls/s, {a.target - knee['rate']:.0f} calls/s short "
              f"of {a.target:.0f}")
        return 1
    print("OK: the target rate held")
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--carrier", choices=("sandbox", "sip"), default="sandbox")
    ap.add_argument("--rates", default="10,25,50,75,100,125,150,200")
    ap.add_argument("--step-seconds", type=float, default=10)
    ap.add_argument("--grace", type=float, default=30)
    ap.add_argument("--max-p99-ms", type=float, default=1000)
    ap.add_argument("--target", type=float, default=100)
    ap.add_argument("--port", type=int, default=18081)
    run_reporting(main(ap.parse_args()))
