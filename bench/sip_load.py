"""SIP carrier load bench: N concurrent calls against a SIPp UAS, each playing a prompt.

Measures, for one call alone (the baseline, measured in the same run) and then for N
calls at once:
  - RTP send pacing jitter: a separate receiver process timestamps every packet and
    compares inter-arrival times with the 20 ms the RTP timestamps promise
    (p50 / p99 / max of |deviation|, and end-to-end drift);
  - CPU per call: this process's CPU time during the playing phase / duration / calls.
Prints the figures and their ratios against the baseline.

    PYTHONPATH=. python bench/sip_load.py                # 50 calls, 30 s prompt (~75 s)
    PYTHONPATH=. python bench/sip_load.py --calls 20 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.telephony.carrier import Answered, DialRequest, Ended, TrunkConfig  # noqa: E402
from services.telephony.sip import SipCarrier  # noqa: E402

SCENARIO = ROOT / "tests" / "interop" / "sip" / "scenarios" / "uas_answer.xml"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def sink_main(port: int, conn, stop) -> None:
    """Receiver process: record (arrival, ssrc, seq, ts) of every PCMU packet."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((HOST, port))
    sock.settimeout(0.2)
    conn.send("ready")
    streams: dict[int, list[tuple[float, int, int]]] = {}
    while not stop.is_set():
        try:
            data = sock.recv(2048)
        except TimeoutError:
            continue
        now = time.monotonic()
        if len(data) < 12 or data[1] & 0x7F != 0:
            continue
        seq, ts, ssrc = struct.unpack_from("!HII", data, 2)
        streams.setdefault(ssrc, []).append((now, seq, ts))
    conn.send(summarize(streams))


def summarize(streams: dict[int, list[tuple[float, int, int]]]) -> dict:
    devs: list[float] = []
    drifts: list[float] = []
    packets = 0
    for pkts in streams.values():
        packets += len(pkts)
        for (a0, s0, t0), (a1, s1, t1) in zip(pkts, pkts[1:]):
            if (s1 - s0) & 0xFFFF == 1:
                devs.append(abs((a1 - a0) - ((t1 - t0) & 0xFFFFFFFF) / 8000) * 1000)
        if len(pkts) > 50:
            span_ts = ((pkts[-1][2] - pkts[0][2]) & 0xFFFFFFFF) / 8000
            drifts.append(abs((pkts[-1][0] - pkts[0][0]) - span_ts) * 1000)
    devs.sort()

    def pct(p: float) -> float:
        return devs[min(len(devs) - 1, int(len(devs) * p))] if devs else math.nan

    return {
        "streams": len(streams),
        "packets": packets,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "max_ms": devs[-1] if devs else math.nan,
        "mean_ms": statistics.fmean(devs) if devs else math.nan,
        "drift_ms": max(drifts) if drifts else math.nan,
    }


def prompt(seconds: float) -> bytes:
    one = array("h", (int(6000 * math.sin(2 * math.pi * 440 * i / 8000)) for i in range(8000))).tobytes()
    whole, frac = divmod(seconds, 1)
    return one * int(whole) + one[: int(frac * 8000) * 2]


async def run_phase(calls: int, duration: float, workdir: Path) -> dict:
    """One SIPp UAS, ``calls`` concurrent calls each playing ``duration`` seconds."""
    sink_port = free_port()
    parent, child = mp.Pipe()
    stop = mp.Event()
    sink = mp.Process(target=sink_main, args=(sink_port, child, stop), daemon=True)
    sink.start()
    parent.recv()
    sip_port = free_port()
    log = open(workdir / f"sipp_{calls}.out", "wb")
    sipp = subprocess.Popen(
        ["sipp", "-sf", str(SCENARIO), "-i", HOST, "-p", str(sip_port), "-mi", HOST, "-mp", str(free_port()),
         "-set", "rtp_port", str(sink_port), "-m", str(calls), "-l", str(calls + 10), "-nostdin",
         "-timeout", f"{int(duration * 3 + 60)}s"],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )
    await asyncio.sleep(0.3)
    carrier = SipCarrier(TrunkConfig(HOST, sip_port), local_ip=HOST, media_timeout_s=3600)
    pcm = prompt(duration)
    try:
        sessions = await asyncio.gather(*(
            carrier.dial(DialRequest(f"bench-{calls}-{i}", f"+1555{i:07d}", "+15550000", timeout_s=20))
            for i in range(calls)
        ))

        async def answered(call) -> bool:
            while True:
                ev = await asyncio.wait_for(call.events.get(), 30)
                if isinstance(ev, Answered):
                    return True
                if isinstance(ev, Ended):
                    return False

        ok = await asyncio.gather(*(answered(s) for s in sessions))
        live = [s for s, a in zip(sessions, ok) if a]
        cpu0, wall0 = time.process_time(), time.monotonic()
        played = await asyncio.gather(*(s.play(pcm) for s in live))
        cpu1, wall1 = time.process_time(), time.monotonic()
        await asyncio.gather(*(s.hangup() for s in live))
        skipped = carrier.clock.skipped
    finally:
        await carrier.close()
    try:
        sipp.wait(15)
    except subprocess.TimeoutExpired:
        sipp.kill()
        sipp.wait()
    log.close()
    stop.set()
    stats = parent.recv()
    sink.join(5)
    stats.update(
        calls=calls,
        answered=len(live),
        played_ok=sum(played),
        wall_s=wall1 - wall0,
        cpu_pct_per_call=100 * (cpu1 - cpu0) / (wall1 - wall0) / max(1, len(live)),
        cpu_pct_total=100 * (cpu1 - cpu0) / (wall1 - wall0),
        clock_skipped_ticks=skipped,
        sipp_rc=sipp.returncode,
    )
    return stats


def show(label: str, s: dict) -> None:
    print(f"{label:>10}: calls={s['calls']} answered={s['answered']} played={s['played_ok']} "
          f"streams={s['streams']} packets={s['packets']} | pacing |dev| p50={s['p50_ms']:.2f} ms "
          f"p99={s['p99_ms']:.2f} ms max={s['max_ms']:.1f} ms drift={s['drift_ms']:.1f} ms | "
          f"CPU {s['cpu_pct_total']:.1f}% total, {s['cpu_pct_per_call']:.2f}% of a core per call | "
          f"skipped ticks={s['clock_skipped_ticks']} sipp rc={s['sipp_rc']}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--duration", type=float, default=30.0, help="prompt length in seconds (30 s by default)")
    args = ap.parse_args()
    if shutil.which("sipp") is None:
        sys.exit("sipp is required (Debian package sip-tester)")
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as tmp:
        base = await run_phase(1, args.duration, Path(tmp))
        show("baseline", base)
        load = await run_phase(args.calls, args.duration, Path(tmp))
        show("load", load)
    print(
        f"ratio load/baseline: pacing p99 x{load['p99_ms'] / base['p99_ms']:.2f}, "
        f"p50 x{load['p50_ms'] / base['p50_ms']:.2f}, "
        f"CPU per call x{load['cpu_pct_per_call'] / base['cpu_pct_per_call']:.2f} "
        f"({os.cpu_count()} CPUs visible)"
    )


if __name__ == "__main__":
    asyncio.run(main())
