"""Media worker path: tts.requested -> tts.rendered throughput, as a ratio to a raw
consume+produce loop over the same records, measured in the same run; plus the worker
process's CPU per event, idle CPU and RSS.

    python bench/media_workers.py [--requests 20000] [--runtimes aiokafka] [--rounds 1]
                                  [--min-ratio 0.05] [--probes 40] [--idle-s 10]

Every request is for a render that is already cached (espeak-ng voice, a handful of
texts rendered once before the run), so the engine costs a cache lookup and the loop
around it is what shows. For each runtime, in its own topics (``CANARY_TOPIC_PREFIX``):

1. the same N request records are published (a backlog, keyed over 97 calls);
2. the worker is started as a real process (``python -m services.tts.worker``, runtime
   chosen by ``CANARY_MEDIA_RUNTIME`` where the checkout has that switch);
3. a follower reads the topic and times the results: out = N / (last - first result),
   and the worker's CPU time over that span per result (start-up and imports excluded);
   in = every record of the topic (requests and the worker's own results, which it
   also reads) / (first result -> the group's committed offsets reach the end);
4. latency: ``--probes`` single requests one after another, each timed from its send to
   its result on the topic (p50 / max);
5. then, with nothing left to do: idle CPU over ``--idle-s`` and RSS (now and peak).

The baseline ("raw") is a ~20-line aiokafka loop in its own process: consume, decode,
derive the result envelope, produce without waiting, wait for the acks, commit. No
handler, no thread pool, no framework.

Exits 1 when a runtime's out rate falls below ``--min-ratio`` of the baseline's (median
over rounds). Needs the stack up (``canary-voice stack up``). Runs from any checkout:
where the worker has no runtime switch, only ``aiokafka`` is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from events import Envelope, decode, encode, new_envelope  # noqa: E402
from services.common.kafka import ensure_topics, make_consumer, make_producer  # noqa: E402

logging.getLogger("aiokafka").setLevel(logging.ERROR)  # leader moves on fresh topics are retried

VOICE = "en-US-Standard-A"
TEXTS = [f"Your reference number is {i}." for i in range(16)]
RESULT = "tts.rendered"
CLK = os.sysconf("SC_CLK_TCK")


def available_runtimes() -> tuple[str, ...]:
    from services.common import event_worker

    return tuple(getattr(event_worker, "RUNTIMES", ("aiokafka",)))


# --------------------------------------------------------------------------- baseline

async def raw_loop() -> None:
    """The baseline process: consume -> decode -> derive result -> produce -> commit."""
    from aiokafka import TopicPartition

    prefix = os.environ["CANARY_TOPIC_PREFIX"]
    topic = prefix + "voice.call.events"
    producer = make_producer()
    consumer = make_consumer(topic, group_id=prefix + "raw", max_poll_records=200)
    await producer.start()
    await consumer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    data = {"audio_ref": "sha256:" + "0" * 64 + ".wav", "duration_ms": 1000, "voice": VOICE, "cache_hit": True}
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            acks = []
            for msgs in batches.values():
                for m in msgs:
                    env = decode(m.value)
                    if isinstance(env, Envelope) and env.type == "tts.requested":
                        out = env.caused(RESULT, data)
                        acks.append(await producer.send(topic, encode(out), key=out.call_id.encode()))
            if acks:
                await asyncio.gather(*acks)
            if batches:
                await consumer.commit({TopicPartition(tp.topic, tp.partition): ms[-1].offset + 1
                                       for tp, ms in batches.items() if ms})
    finally:
        await consumer.stop()
        await producer.stop()


# --------------------------------------------------------------------------- process figures

def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def proc_mem_mb(pid: int) -> tuple[float, float]:
    got = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            got[line.split(":")[0]] = int(line.split()[1]) / 1024
    return got["VmRSS"], got["VmHWM"]


# --------------------------------------------------------------------------- one measurement

def prerender(media_dir: str) -> None:
    from services.common.media_store import LocalMediaStore
    from services.tts.engines import EspeakEngine
    from services.tts.render import Renderer

    renderer = Renderer(LocalMediaStore(media_dir), {"espeak": EspeakEngine()})
    for t in TEXTS:
        renderer.render_sync({"text": t, "voice": VOICE})


def make_records(n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        env = new_envelope("tts.requested", f"call_{i % 97:03d}", "acct_bench",
                           {"text": TEXTS[i % len(TEXTS)], "voice": VOICE, "step": f"s{i}"})
        out.append((env.call_id.encode(), encode(env)))
    return out


async def committed_total(admin, group: str, topic: str) -> int:
    offs = await admin.list_consumer_group_offsets(group)
    return sum(o.offset for tp, o in offs.items() if tp.topic == topic and o.offset >= 0)


async def end_total(consumer, topic: str) -> int:
    from aiokafka import TopicPartition

    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    return sum((await consumer.end_offsets(tps)).values())


async def probe_latency(producer, follower, topic: str, n: int) -> list[float]:
    """Send one request at a time; seconds from each send to its result on the topic."""
    out = []
    for i in range(n):
        env = new_envelope("tts.requested", f"call_{i % 97:03d}", "acct_bench",
                           {"text": TEXTS[i % len(TEXTS)], "voice": VOICE, "step": f"p{i}"})
        t = time.perf_counter()
        await producer.send_and_wait(topic, encode(env), key=env.call_id.encode())
        done = False
        while not done:
            if time.perf_counter() - t > 30:
                raise RuntimeError("latency probe: no result within 30 s")
            for msgs in (await follower.getmany(timeout_ms=100)).values():
                for m in msgs:
                    e = decode(m.value)
                    if isinstance(e, Envelope) and e.type == RESULT and e.causation_id == env.id:
                        done = True
        out.append(time.perf_counter() - t)
        await asyncio.sleep(0.05)
    return out


async def measure(runtime: str, records: list[tuple[bytes, bytes]], media_dir: str, idle_s: float,
                  logdir: Path, probes: int) -> dict:
    from aiokafka.admin import AIOKafkaAdminClient

    from services.common.config import settings

    prefix = f"bmw{uuid.uuid4().hex[:8]}."
    topic = prefix + "voice.call.events"
    await ensure_topics(prefix=prefix)
    producer = make_producer(linger_ms=20)
    await producer.start()
    futs = [await producer.send(topic, raw, key=key) for key, raw in records]
    await asyncio.gather(*futs)
    await producer.stop()
    n = len(records)
    probe = make_producer(linger_ms=0)
    await probe.start()

    follower = make_consumer(topic, group_id=None, max_poll_records=5000)
    await follower.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings().kafka_bootstrap)
    await admin.start()

    env = {**os.environ, "CANARY_TOPIC_PREFIX": prefix, "CANARY_MEDIA_DIR": media_dir,
           "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    if runtime == "raw":
        cmd, group = [sys.executable, str(Path(__file__).resolve()), "--raw-loop"], prefix + "raw"
    else:
        env["CANARY_MEDIA_RUNTIME"] = runtime
        cmd, group = [sys.executable, "-m", "services.tts.worker"], prefix + "tts"
    log = open(logdir / f"{runtime}.log", "ab")
    t_spawn = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        seen: set[str] = set()
        results = 0
        first = last = None
        deadline = t_spawn + 600
        while len(seen) < n:
            if time.perf_counter() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{runtime}: {len(seen)}/{n} results (see {logdir / (runtime + '.log')})")
            for msgs in (await follower.getmany(timeout_ms=200)).values():
                for m in msgs:
                    e = decode(m.value)
                    if isinstance(e, Envelope) and e.type == RESULT:
                        now = time.perf_counter()
                        if first is None:
                            first, cpu_first = now, proc_cpu_s(proc.pid)
                        last = now
                        results += 1
                        seen.add(e.causation_id)
        cpu_busy = proc_cpu_s(proc.pid)
        rss_busy, _ = proc_mem_mb(proc.pid)
        # "in": every record of the topic consumed and committed by the worker's group
        total = await end_total(follower, topic)
        while await committed_total(admin, group, topic) < total:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{runtime}: offsets never committed to the end")
            await asyncio.sleep(0.05)
        drained = time.perf_counter()
        cpu_drained = proc_cpu_s(proc.pid)
        lat = await probe_latency(probe, follower, topic, probes) if probes else [float("nan")]
        await asyncio.sleep(2)
        c0, t0 = proc_cpu_s(proc.pid), time.perf_counter()
        await asyncio.sleep(idle_s)
        idle_cpu = (proc_cpu_s(proc.pid) - c0) / (time.perf_counter() - t0)
        rss, hwm = proc_mem_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        await probe.stop()
        await follower.stop()
        await admin.close()
    return {
        "runtime": runtime,
        "out_per_s": n / max(last - first, 1e-9),
        "in_per_s": total / max(drained - first, 1e-9),
        "startup_s": first - t_spawn,
        "duplicates": results - n,
        "cpu_ms_per_event": (cpu_busy - cpu_first) * 1000 / n,
        "cpu_startup_s": cpu_first,
        "cpu_total_s": cpu_drained,
        "idle_cpu_pct": idle_cpu * 100,
        "rss_mb": rss,
        "rss_busy_mb": rss_busy,
        "rss_peak_mb": hwm,
        "lat_p50_ms": statistics.median(lat) * 1000,
        "lat_max_ms": max(lat) * 1000,
    }


# --------------------------------------------------------------------------- report

def report(rows: list[dict], runtimes: list[str], min_ratio: float) -> int:
    by = {r: [x for x in rows if x["runtime"] == r] for r in ["raw", *runtimes]}

    def med(r: str, k: str) -> float:
        return statistics.median(x[k] for x in by[r])

    base = med("raw", "out_per_s")
    print()
    print(f"{'runtime':<20} {'out ev/s':>9} {'in rec/s':>9} {'ratio':>6} {'CPU ms/ev':>9} {'startup s':>9} "
          f"{'idle CPU':>8} {'RSS MB':>7} {'peak MB':>7} {'lat p50':>8} {'lat max':>8} {'dups':>5}"
          f"  (median of {len(by['raw'])})")
    failed = []
    for r in ["raw", *runtimes]:
        ratio = med(r, "out_per_s") / base
        print(f"{r:<20} {med(r, 'out_per_s'):>9,.0f} {med(r, 'in_per_s'):>9,.0f} {ratio:>6.2f} "
              f"{med(r, 'cpu_ms_per_event'):>9.3f} {med(r, 'startup_s'):>9.2f} {med(r, 'idle_cpu_pct'):>7.2f}% "
              f"{med(r, 'rss_mb'):>7.0f} {med(r, 'rss_peak_mb'):>7.0f} {med(r, 'lat_p50_ms'):>6.1f}ms "
              f"{max(x['lat_max_ms'] for x in by[r]):>6.1f}ms {max(x['duplicates'] for x in by[r]):>5}")
        if r != "raw" and ratio < min_ratio:
            failed.append(f"{r} {ratio:.2f}")
    print("out = results/s first->last result; in = topic records/s consumed and committed; "
          "ratio = out / raw loop's out")
    if failed:
        print(f"FELL BEHIND (ratio < {min_ratio}): {', '.join(failed)}")
        return 1
    return 0


async def main(args) -> int:
    have = available_runtimes()
    runtimes = [r for r in (args.runtimes.split(",") if args.runtimes else have)]
    missing = [r for r in runtimes if r not in have]
    if missing:
        print(f"not in this checkout: {', '.join(missing)} (available: {', '.join(have)})", file=sys.stderr)
        return 2
    media_dir = tempfile.mkdtemp(prefix="bench-media-")
    logdir = Path(tempfile.mkdtemp(prefix="bench-media-logs-"))
    prerender(media_dir)
    records = make_records(args.requests)
    print(f"{args.requests} tts.requested for cached renders, 6 partitions, {args.rounds} round(s); "
          f"runtimes: raw (baseline), {', '.join(runtimes)}; logs in {logdir}")
    rows = []
    for rnd in range(args.rounds):
        order = ["raw", *runtimes]
        if rnd % 2:
            order.reverse()  # alternate the order so drift on a shared machine evens out
        for r in order:
            row = await measure(r, records, media_dir, args.idle_s, logdir, args.probes)
            rows.append(row)
            print(f"  round {rnd + 1} {r:<20} out {row['out_per_s']:>8,.0f} ev/s  in {row['in_per_s']:>8,.0f} rec/s  "
                  f"CPU {row['cpu_ms_per_event']:.3f} ms/ev  idle {row['idle_cpu_pct']:.2f}%  "
                  f"RSS {row['rss_mb']:.0f} MB (peak {row['rss_peak_mb']:.0f})  startup {row['startup_s']:.2f} s  "
                  f"latency p50 {row['lat_p50_ms']:.1f} ms",
                  flush=True)
    shutil.rmtree(media_dir, ignore_errors=True)
    return report(rows, runtimes, args.min_ratio)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--runtimes", default="", help="comma-separated; default: every runtime this checkout has")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--probes", type=int, default=40, help="single requests timed for latency")
    ap.add_argument("--min-ratio", type=float, default=0.05)
    ap.add_argument("--raw-loop", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.raw_loop:
        asyncio.run(raw_loop())
        sys.exit(0)
    sys.exit(asyncio.run(main(a)))
