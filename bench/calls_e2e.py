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
import asyncio
import os
import signal
import statistics
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from events import decode  # noqa: E402
from events.catalog import TERMINAL_EVENTS  # noqa: E402
from services.common import accounts, db  # noqa: E402
from services.common.kafka import ensure_topics, make_consumer, make_producer  # noqa: E402
from tests.conftest import service_env, spawn  # noqa: E402

MODULES = ["services.api", "services.orchestrator.service", "services.telephony.gateway", "services.tts.worker",
           "services.projector.service"]


def pct(xs, p):
    """The p-quantile in ms (nan for nothing: a run where nothing got that far still reports)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000 if xs else float("nan")


async def kafka_hop(prefix: str, n: int = 300) -> list[float]:
    topic = prefix + "voice.media.audio"
    c = make_consumer(topic, group_id=None, auto_offset_reset="latest")
    await c.start()
    await c.seek_to_end()
    p = make_producer()
    await p.start()
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await p.send_and_wait(topic, b"x", key=str(i).encode())
        while True:
            got = await c.getmany(timeout_ms=1000)
            if got:
                break
        out.append(time.perf_counter() - t0)
    await p.stop()
    await c.stop()
    return out


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process and its waited-for children used so far."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def broker_pid() -> int | None:
    try:
        return int((Path(".local/kafka/kafka.pid")).read_text().strip())
    except (OSError, ValueError):
        return None


async def main(n: int, rate: float, port: int) -> int:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    await ensure_topics(prefix=prefix)
    conn = await db.connect()
    acct = await accounts.create_account(conn, "bench-" + prefix.rstrip("."), calls_per_second=rate * 2)
    await accounts.ensure_number(conn, acct["id"], "+15559876543")
    _, key = await accounts.create_key(conn, acct["id"], "test")
    logdir = Path(".local/bench")
    logdir.mkdir(parents=True, exist_ok=True)
    env = service_env(prefix, CANARY_API_PORT=str(port), CANARY_PROJECTION_SCHEMA="bench_" + prefix.rstrip("."),
                      CANARY_SANDBOX_SPEED="10")
    procs = [spawn(m, env, logdir / f"{m}.log") for m in MODULES]
    ringing: dict[str, float] = {}
    stages: dict[str, dict[str, tuple[float, float]]] = {}
    ended: dict[str, float] = {}
    follower_ready = asyncio.Event()

    async def follow():
        c = make_consumer(prefix + "voice.call.events", group_id=None)
        await c.start()
        follower_ready.set()
        try:
            while True:
                for msgs in (await c.getmany(timeout_ms=100)).values():
                    now = time.perf_counter()
                    for m in msgs:
                        e = decode(m.value)
                        t = getattr(e, "type", None)
                        if t in ("call.queued", "dial.requested", "call.ringing"):
                            stages.setdefault(e.call_id, {})[t] = (
                                datetime.fromisoformat(e.occurred_at).timestamp(), m.timestamp / 1000)
                        if t == "call.ringing":
                            # the gateway's own timestamp: the bench's lag is not the product's
                            ringing.setdefault(e.call_id, datetime.fromisoformat(e.occurred_at).timestamp())
                        elif getattr(e, "type", None) in TERMINAL_EVENTS:
                            ended.setdefault(e.call_id, now)
        finally:
            await c.stop()

    try:
        base = await kafka_hop(prefix)
        task = asyncio.create_task(follow())
        await follower_ready.wait()
        url = f"http://127.0.0.1:{port}"
        # Enough connections for the rate: at 100 calls/s and a slow API, httpx's default pool
        # of 100 ran dry and the bench died of PoolTimeout instead of reporting.
        limits = httpx.Limits(max_connections=max(100, int(rate * 4)), max_keepalive_connections=100)
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10,
                                     limits=limits) as http:
            for _ in range(100):
                try:
                    await http.get("/v1/voice/calls")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # consumers join their groups
            body = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Your code is 1 2 3 4."}}
            # One warm-up call first: each run has a new account, whose first prompt is a real
            # render (and loads the voice model); the measured calls find it in the cache.
            warm = (await http.post("/v1/voice/calls", json=body)).json()["id"]
            for _ in range(600):
                if warm in ended:
                    break
                await asyncio.sleep(0.1)
            sent: dict[str, float] = {}
            failures = 0
            answered: list[float] = []
            watched = {m.rsplit(".", 2)[1] if m.count(".") > 1 else m.split(".")[-1]: p.pid
                       for m, p in zip(MODULES, procs)}
            if (bp := broker_pid()) is not None:
                watched["kafka broker"] = bp
            cpu0 = {k: cpu_s(pid) for k, pid in watched.items()}
            t_start = time.perf_counter()

            errors: dict[str, int] = {}

            async def post(i):
                nonlocal failures
                await asyncio.sleep(max(0.0, t_start + i / rate - time.perf_counter()))
                t0 = time.time()
                try:
                    r = await http.post("/v1/voice/calls", json=body)
                except httpx.HTTPError as exc:  # the system fell behind: counted, never fatal
                    failures += 1
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    return
                answered.append(time.time() - t0)
                if r.status_code in (200, 201):
                    sent[r.json()["id"]] = t0
                else:
                    failures += 1
                    errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1

            await asyncio.gather(*(post(i) for i in range(n)))
            posted_s = time.perf_counter() - t_start
            deadline = time.perf_counter() + 120
            while len(ended) < len(sent) and time.perf_counter() < deadline:
                await asyncio.sleep(0.2)
            cpu = {k: cpu_s(pid) - cpu0[k] for k, pid in watched.items()}
        task.cancel()
        lat = [ringing[c] - t for c, t in sent.items() if c in ringing]
        done = [ended[c] for c in sent if c in ended]
        span = (max(done) - t_start) if done else float("nan")
        print(f"calls: {n} submitted at {rate:.0f}/s, {len(sent)} accepted, {failures} refused or failed "
              f"({', '.join(f'{k} {v}' for k, v in sorted(errors.items())) or 'none'}), {len(done)} ended")
        achieved = len(sent) / posted_s if posted_s > 0 else 0.0
        backlog = len(sent) - len(done)
        print(f"achieved: {achieved:.1f} accepted calls/s ({achieved / rate:.2f} of the asked rate); "
              f"backlog at the end: {backlog} accepted calls not ended")
        print(f"baseline one Kafka hop: p50 {pct(base, .5):.1f} ms  p99 {pct(base, .99):.1f} ms")
        print(f"dial latency POST -> call.ringing: p50 {pct(lat, .5):.1f} ms  p99 {pct(lat, .99):.1f} ms "
              f"(mean {statistics.mean(lat) * 1000 if lat else float('nan'):.1f} ms)")
        print(f"ratio dial p50 / Kafka hop p50: {pct(lat, .5) / pct(base, .5):.1f}x;  "
              f"p99: {pct(lat, .99) / pct(base, .99):.1f}x")
        print(f"calls completed/s: {len(done) / span:.1f}" if done else "calls completed/s: none ended")

        def stage(name, fn):
            xs = [fn(c, st) for c, st in stages.items() if c in sent and len(st) == 3]
            if xs:
                print(f"  {name}: p50 {pct(xs, .5):.1f} ms  p99 {pct(xs, .99):.1f} ms")
        print("stages (service timestamps):")
        if answered:
            print(f"  POST answered (API, as the client sees it): p50 {pct(answered, .5):.1f} ms  "
                  f"p99 {pct(answered, .99):.1f} ms")
        stage("POST -> call.queued decided (API + orchestrator)", lambda c, st: st["call.queued"][0] - sent[c])
        stage("dial.requested in Kafka -> call.ringing (gateway + sandbox)",
              lambda c, st: st["call.ringing"][0] - st["dial.requested"][1])
        if sent:
            total = sum(cpu.values())
            print(f"CPU per call: {total / len(sent) * 1000:.1f} ms across the processes ("
                  + ", ".join(f"{k} {v / len(sent) * 1000:.1f}" for k, v in cpu.items()) + ")")
        behind = []
        if failures:
            behind.append(f"{failures} of {n} POSTs not accepted")
        if backlog:
            behind.append(f"{backlog} accepted calls did not end within 120 s")
        if achieved < 0.95 * rate:
            behind.append(f"accepted {achieved:.1f}/s of {rate:.0f}/s asked ({achieved / rate:.0%})")
        print("BEHIND: " + "; ".join(behind) if behind else "OK: every call accepted and ended at the asked rate")
        return 1 if behind else 0
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=30)
        await conn.execute("DELETE FROM accounts WHERE id = $1", acct["id"])
        await conn.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--port", type=int, default=18080)
    a = ap.parse_args()
    try:
        sys.exit(asyncio.run(main(a.calls, a.rate, a.port)))
    except Exception as exc:  # a bench reports, it never crashes
        print(f"bench failed to run: {type(exc).__name__}: {exc}")
        sys.exit(2)
