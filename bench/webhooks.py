"""Webhook delivery throughput: deliveries/s to a local receiver, all healthy vs 1% slow.

    python bench/webhooks.py                         # 1,500 calls x 4 events, 100 endpoints, 2+2 runs (~2 min)
    python bench/webhooks.py --calls 5000 --endpoints 200

What runs (each run on its own topics, CANARY_TOPIC_PREFIX=bench...):
  - the real worker, `python -m services.webhooks`, as a subprocess (CANARY_ALLOW_PRIVATE_URLS=1,
    its own CANARY_WEBHOOK_* defaults unless you export others);
  - a receiver in another process (aiohttp) listening on one port per endpoint, so every
    endpoint is a distinct scheme://host:port, the worker's unit of fairness. Endpoint i
    belongs to account i % accounts (accounts and signing secrets created in Postgres);
    the receiver verifies every Canary-Signature with the account's secret;
  - N calls' worth of status events (queued, ringing, answered, completed: 4 webhooks per
    call), call c -> endpoint c % endpoints, produced before the worker starts (a backlog).

Run 1: every endpoint answers 200 at once. Run 2: 1% of the endpoints (by port) answer
200 after 2 s. Throughput is counted on the *healthy* endpoints only (the same set in
both runs): unique deliveries / (last healthy delivery - first delivery of the run), so
the worker's start-up and Kafka group join are not counted. The figure to watch is
run2/run1 (target >= 0.8: a slow customer must not slow the others).

Once the whole backlog is in the outbox the bench runs ANALYZE webhook_deliveries (as
autovacuum eventually would), so every run gets the same planner statistics; --no-analyze
skips it and shows the claim query's plan problem (stale stats -> nested-loop anti join,
O(pending^2), a few deliveries/s with a backlog of thousands).

Everything created is removed at the end (also on SIGINT/SIGTERM): topics, consumer
groups, accounts, outbox rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"
EVENT_TYPES = ("call.queued", "call.ringing", "call.answered", "call.completed")


# --- receiver (separate process) -----------------------------------------------------------

async def receiver_main(cfg_path: str) -> None:
    """Listen on one port per endpoint; answer 200 (after `slow_s` on slow endpoints); count.

    Prints one JSON line with the bound ports once listening; serves GET /stats on a
    control port. Timestamps are time.monotonic() (CLOCK_MONOTONIC, the same in every process).
    """
    from aiohttp import web

    from services.common import signing

    cfg = json.loads(Path(cfg_path).read_text())
    secrets: list[str] = cfg["secrets"]  # per endpoint index
    slow: set[int] = set(cfg["slow"])  # these answer after slow_s
    excluded: set[int] = set(cfg["excluded"])  # not counted as healthy (the run-2 slow set, in both runs)
    slow_s: float = cfg["slow_s"]
    seen: set[str] = set()
    st = {"healthy": 0, "slow": 0, "dups": 0, "bad_sig": 0, "first": None, "healthy_last": None,
          "slow_last": None, "per_endpoint": [0] * len(secrets), "in_flight_slow": 0, "max_in_flight_slow": 0}

    def handler_for(idx: int):
        is_slow = idx in slow
        counted_slow = idx in excluded
        secret = secrets[idx]

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            if is_slow:
                st["in_flight_slow"] += 1
                st["max_in_flight_slow"] = max(st["max_in_flight_slow"], st["in_flight_slow"])
                try:
                    await asyncio.sleep(slow_s)
                finally:
                    st["in_flight_slow"] -= 1
            now = time.monotonic()
            if not signing.is_valid(secret, body, request.headers.get(signing.HEADER, "")):
                st["bad_sig"] += 1
                return web.Response(status=401, text="bad signature")
            eid = request.headers.get("Canary-Event-Id", "")
            if eid in seen:
                st["dups"] += 1
                return web.Response(text="dup")
            seen.add(eid)
            if st["first"] is None:
                st["first"] = now
            st["per_endpoint"][idx] += 1
            if counted_slow:
                st["slow"] += 1
                st["slow_last"] = now
            else:
                st["healthy"] += 1
                st["healthy_last"] = now
            return web.Response(text="ok")
        return handle

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(st)

    runners = []
    ports = []
    for idx in range(len(secrets)):
        app = web.Application()
        app.router.add_post("/{tail:.*}", handler_for(idx))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0, backlog=1024)
        await site.start()
        runners.append(runner)
        ports.append(site._server.sockets[0].getsockname()[1])
    ctl = web.Application()
    ctl.router.add_get("/stats", stats)
    runner = web.AppRunner(ctl, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    runners.append(runner)
    print(json.dumps({"ports": ports, "control": site._server.sockets[0].getsockname()[1]}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for r in runners:
        await r.cleanup()


# --- bench ---------------------------------------------------------------------------------

def make_events(n_calls: int, urls: list[str], account_of: list[str]):
    from events import Envelope

    out = []
    for c in range(n_calls):
        e = c % len(urls)
        cid = f"call_bwh{uuid.uuid4().hex[:16]}"
        for i, t in enumerate(EVENT_TYPES):
            data: dict = {}
            if t == "call.queued":
                data = {"to": "+15551234567", "from": "+15559876543", "created_at": "2026-01-01T00:00:00Z",
                        "direction": "outbound", "tts": {"text": "Your code is 1234"}, "webhook_url": urls[e]}
            elif t == "call.completed":
                data = {"reason": "callee hung up", "hangup_by": "callee", "duration": 12}
            out.append((e, Envelope(type=t, call_id=cid, account_id=account_of[e], data=data,
                                    occurred_at=f"2026-01-01T00:00:{i:02d}.000Z")))
    return out


async def http_json(port: int, path: str) -> dict:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


async def run_once(label: str, args, accounts: list[tuple[str, str]], slow: set[int], healthy_set: set[int],
                   tmp: Path, pg, created_topics: list[str], groups: list[str]) -> dict:
    from services.common.kafka import ensure_topics, make_producer, publish_many

    prefix = f"benchwh{uuid.uuid4().hex[:8]}."
    topic = prefix + "voice.call.events"
    created_topics.extend(await ensure_topics(prefix=prefix))
    groups.append(prefix + "webhooks")

    n_ep = args.endpoints
    account_of = [accounts[i % len(accounts)][0] for i in range(n_ep)]
    secret_of = [accounts[i % len(accounts)][1] for i in range(n_ep)]
    slug = label.split(" (")[0].replace(" ", "")
    cfg = tmp / f"receiver_{slug}.json"
    excluded = sorted(set(range(n_ep)) - healthy_set)
    cfg.write_text(json.dumps({"secrets": secret_of, "slow": sorted(slow), "excluded": excluded,
                               "slow_s": args.slow_s}))
    rec = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--receiver", str(cfg)],
                           stdout=subprocess.PIPE, stderr=open(tmp / f"receiver_{slug}.err", "wb"), cwd=ROOT)
    worker = None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(rec.stdout.readline), 30)
        info = json.loads(line)
        ports, control = info["ports"], info["control"]
        urls = [f"http://{HOST}:{p}/hooks/ep{i}" for i, p in enumerate(ports)]

        evs = make_events(args.calls, urls, account_of)
        want_healthy = sum(1 for e, _ in evs if e in healthy_set)
        want_slow = len(evs) - want_healthy
        producer = make_producer(linger_ms=20)
        await producer.start()
        try:
            envs = [env for _, env in evs]
            for i in range(0, len(envs), 5000):
                await publish_many(producer, topic, envs[i:i + 5000])
        finally:
            await producer.stop()

        env = {**os.environ, "CANARY_TOPIC_PREFIX": prefix, "CANARY_ALLOW_PRIVATE_URLS": "1",
               "PYTHONPATH": str(ROOT)}
        wlog = open(tmp / f"worker_{slug}.log", "wb")
        t_start = time.monotonic()
        worker = subprocess.Popen([sys.executable, "-m", "services.webhooks"], env=env, cwd=ROOT,
                                  stdout=wlog, stderr=subprocess.STDOUT)
        analyzed_at = None
        cpu0 = n0 = t0 = None  # worker CPU from the first delivery on (imports and group join excluded)
        deadline = t_start + args.timeout
        st: dict = {}
        healthy_done_at = None
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            if worker.poll() is not None:
                raise SystemExit(f"webhook worker exited with {worker.returncode}; see its log")
            st = await http_json(control, "/stats")
            if analyzed_at is None and args.analyze and await pg.fetchval(
                    "SELECT count(*) FROM webhook_deliveries WHERE source_topic = $1", topic) >= len(evs):
                # The whole backlog is in the outbox: refresh the planner's statistics, as
                # autovacuum would sooner or later. Without it the claim query may run with
                # stats that say "no pending rows" and pick a quadratic plan (see --help).
                await pg.execute("ANALYZE webhook_deliveries")
                analyzed_at = time.monotonic()
            if cpu0 is None and st["first"] is not None:
                cpu0, n0, t0 = _proc_cpu(worker.pid), st["healthy"] + st["slow"], time.monotonic()
            if st["healthy"] >= want_healthy and healthy_done_at is None:
                healthy_done_at = time.monotonic()
                cpu_healthy = _proc_cpu(worker.pid) - cpu0
                cpu_n = st["healthy"] + st["slow"] - n0
                cpu_wall = healthy_done_at - t0
            if healthy_done_at is not None and (st["slow"] >= want_slow
                                                or time.monotonic() - healthy_done_at > args.slow_wait):
                break
        else:
            cpu_healthy, cpu_n, cpu_wall = float("nan"), 1, float("nan")
        worker.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(worker.wait), 30)
        except asyncio.TimeoutError:
            worker.kill()
        wlog.close()
        rows = await pg.fetch("SELECT status, count(*) AS n, sum(attempts) AS attempts FROM webhook_deliveries"
                              " WHERE source_topic = $1 GROUP BY status", topic)
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        rec.send_signal(signal.SIGTERM)
        try:
            rec.wait(10)
        except subprocess.TimeoutExpired:
            rec.kill()
            rec.wait()
        await pg.execute("DELETE FROM webhook_deliveries WHERE source_topic = $1", topic)

    span = (st["healthy_last"] - st["first"]) if st.get("healthy_last") and st.get("first") else float("nan")
    return {
        "label": label, "topic": topic,
        "analyzed_after_s": (analyzed_at - t_start) if analyzed_at else None,
        "healthy_want": want_healthy, "healthy_got": st.get("healthy", 0),
        "slow_want": want_slow, "slow_got": st.get("slow", 0),
        "rate": st.get("healthy", 0) / span if span and span > 0 else float("nan"),
        "span_s": span, "startup_s": (st["first"] - t_start) if st.get("first") else float("nan"),
        "dups": st.get("dups", 0), "bad_sig": st.get("bad_sig", 0),
        "max_in_flight_slow": st.get("max_in_flight_slow", 0),
        "worker_cpu_pct": 100 * cpu_healthy / cpu_wall if cpu_wall and cpu_wall > 0 else float("nan"),
        "cpu_ms_per_delivery": 1000 * cpu_healthy / max(1, cpu_n),
        "db": {r["status"]: (r["n"], r["attempts"]) for r in rows},
    }


def _proc_cpu(pid: int) -> float:
    """utime+stime of a process in seconds (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def show(r: dict) -> None:
    print(f"{r['label']}: healthy endpoints {r['healthy_got']}/{r['healthy_want']} deliveries in {r['span_s']:.2f} s"
          f" = {r['rate']:,.0f} deliveries/s | the 1% set {r['slow_got']}/{r['slow_want']}"
          f" (max {r['max_in_flight_slow']} in flight) | first delivery {r['startup_s']:.1f} s after worker start"
          f" | worker CPU {r['worker_cpu_pct']:.0f}% of a core ({r['cpu_ms_per_delivery']:.2f} ms/delivery)"
          f" | dups {r['dups']} bad signatures {r['bad_sig']}"
          f" | outbox {r['db']}"
          + (f" | ANALYZE {r['analyzed_after_s']:.1f} s after worker start" if r["analyzed_after_s"] else ""))


async def cleanup_kafka(created_topics: list[str], groups: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from services.common.config import settings

    admin = AIOKafkaAdminClient(bootstrap_servers=settings().kafka_bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        for g in groups:  # this aiokafka has no delete_consumer_groups: send DeleteGroups to the coordinator
            try:
                from aiokafka.protocol.admin import DeleteGroupsRequest

                node = await admin.find_coordinator(g)
                await admin._send_request_to_node(node, DeleteGroupsRequest([g]))
            except Exception as exc:
                print(f"(consumer group {g} not deleted: {exc})")
        if created_topics:
            try:
                await admin.delete_topics(created_topics)
            except Exception as exc:
                print(f"(topics not deleted: {exc})")
    finally:
        await admin.close()


async def main(args) -> None:
    from services.common import db

    me = asyncio.current_task()
    for sig in (signal.SIGINT, signal.SIGTERM):  # stop = cancel, so the finally blocks clean up
        asyncio.get_running_loop().add_signal_handler(sig, me.cancel)

    n_ep = args.endpoints
    n_slow = max(1, round(n_ep * args.slow_fraction))
    slow = set(range(0, n_ep, max(1, n_ep // n_slow)))
    slow = set(sorted(slow)[:n_slow])
    healthy_set = set(range(n_ep)) - slow
    pg = await db.connect()
    tag = uuid.uuid4().hex[:8]
    accounts: list[tuple[str, str]] = []
    created_topics: list[str] = []
    groups: list[str] = []
    try:
        for i in range(args.accounts):
            acct_id = f"acct_benchwh{tag}{i:04d}"
            secret = f"whsec_{uuid.uuid4().hex}"
            await pg.execute("INSERT INTO accounts (id, name, signing_secret) VALUES ($1, $2, $3)",
                             acct_id, acct_id, secret)
            accounts.append((acct_id, secret))
        print(f"{args.calls} calls x {len(EVENT_TYPES)} webhooks = {args.calls * len(EVENT_TYPES)} deliveries per run,"
              f" {n_ep} endpoints (ports), {args.accounts} accounts; run 2: {len(slow)} endpoint(s) answer after"
              f" {args.slow_s:g} s ({os.cpu_count()} CPUs visible)")
        with tempfile.TemporaryDirectory() as tmpd:
            tmp = Path(tmpd)
            # ABBA order (healthy, slow, slow, healthy, ...): the machine is shared and noisy,
            # so a drift in background load hits both conditions alike.
            order = []
            for r in range(args.rounds):
                order += [False, True] if r % 2 == 0 else [True, False]
            results: dict[bool, list[dict]] = {False: [], True: []}
            for i, is_slow in enumerate(order):
                label = (f"run {i + 1} ({len(slow)} of {n_ep} endpoints slow)" if is_slow
                         else f"run {i + 1} (all healthy)")
                r = await run_once(label, args, accounts, slow if is_slow else set(), healthy_set, tmp, pg,
                                   created_topics, groups)
                show(r)
                results[is_slow].append(r)
            if args.keep_logs:
                for f in tmp.iterdir():
                    (Path(args.keep_logs) / f.name).write_bytes(f.read_bytes())

        def mean(xs):
            return sum(xs) / len(xs)

        h = mean([r["rate"] for r in results[False]])
        s_ = mean([r["rate"] for r in results[True]])
        hc = mean([r["cpu_ms_per_delivery"] for r in results[False]])
        sc = mean([r["cpu_ms_per_delivery"] for r in results[True]])
        runs_h = ", ".join(f"{r['rate']:,.0f}" for r in results[False])
        runs_s = ", ".join(f"{r['rate']:,.0f}" for r in results[True])
        print(f"healthy endpoints, all healthy (run 1 kind): {h:,.0f} deliveries/s (runs: {runs_h}),"
              f" worker {hc:.2f} CPU-ms/delivery")
        print(f"healthy endpoints, 1% slow    (run 2 kind): {s_:,.0f} deliveries/s (runs: {runs_s}),"
              f" worker {sc:.2f} CPU-ms/delivery")
        ratio = s_ / h
        print(f"ratio run2/run1: {ratio:.2f} (target >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'})")
    finally:
        ids = [a for a, _ in accounts]
        if ids:
            await pg.execute("DELETE FROM webhook_deliveries WHERE account_id = ANY($1::text[])", ids)
            await pg.execute("DELETE FROM webhook_calls WHERE account_id = ANY($1::text[])", ids)
            await pg.execute("DELETE FROM accounts WHERE id = ANY($1::text[])", ids)
        await pg.close()
        await cleanup_kafka(created_topics, groups)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1500, help="calls per run (4 webhooks each)")
    ap.add_argument("--rounds", type=int, default=2,
                    help="pairs of runs (healthy + slow), in ABBA order; the figures are the means")
    ap.add_argument("--endpoints", type=int, default=100, help="receiver ports (endpoints)")
    ap.add_argument("--accounts", type=int, default=100, help="accounts; endpoint i belongs to account i %% accounts")
    ap.add_argument("--slow-fraction", type=float, default=0.01)
    ap.add_argument("--slow-s", type=float, default=2.0, help="answer delay of the slow endpoints")
    ap.add_argument("--slow-wait", type=float, default=20.0,
                    help="after the healthy ones are done, wait at most this long for the slow ones")
    ap.add_argument("--timeout", type=float, default=240.0, help="per run")
    ap.add_argument("--no-analyze", dest="analyze", action="store_false",
                    help="do not ANALYZE webhook_deliveries once the backlog is in the outbox (shows the claim"
                         " query's plan problem: with stale statistics it is O(pending^2))")
    ap.add_argument("--keep-logs", metavar="DIR", help="copy worker/receiver logs here")
    ap.add_argument("--receiver", metavar="CFG", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.receiver:
        asyncio.run(receiver_main(a.receiver))
    else:
        asyncio.run(main(a))
