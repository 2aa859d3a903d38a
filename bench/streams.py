"""Media streams benchmark: what the gateway's stream edge adds, and 100 streams at real time.

No Kafka: real sandbox sessions on the shared 20 ms frame clock (speed 1) and the gateway's
``MediaStream`` against a Twilio-format echo app in a second process (it sends every media
frame back as app media, as an echo bot does). Each callee frame carries an id, so we see it
leave (``on_audio``), come back into the call (taken by the carrier's tick from the stream's feed) and go
out on the wire (the tick that sends it, ``on_sent_audio``).

1. Baseline, same run, same app process: a bare `websockets` client sends the same media
   messages every 20 ms and times the echo (the round trip any stream pays: two sockets,
   JSON, the app).
2. One stream: round trip callee frame -> app -> back into the call, p50/p99, and the
   gateway's addition over the baseline (target: p99 within 5 ms of it). On the wire it is
   one frame (20 ms): the carrier sends on its clock.
3. ``--streams`` (100) bidirectional streams held ``--seconds``: every stream must stay up
   with nothing shed, and pacing p99 <= 5 ms (how far from its 20 ms slot) on each side: the
   frames the gateway writes to the app (on the carrier's tick), the frames it sends into
   the call (the app's echo among them), and the frames' arrival at the app. The gateway side
   runs at the priority the gateway asks for (``CANARY_MEDIA_PRIORITY``), and so does the app
   (it stands in for a customer's server on its own machine; here it shares the 2 cores, and at
   normal priority its loop's own lateness would be counted as ours: ``--app-priority normal``);
   the baseline is an idle 20 ms clock at the gateway side's priority in a third process
   meanwhile (how late this machine wakes such a process right now: its floor).
4. The floor for work on a tick, same run: afterwards, a process at the same priority does
   as much plain CPU work per 20 ms as the gateway's median tick took, in one slice per
   stream, timed per slice as the gateway's frames are. A tick's frames leave one after the
   other, so a tick the machine stretches makes the last streams' frames late; this shows
   how far it stretches the same amount of work that does nothing but compute.

Run: ``python -m bench.streams`` (about 40 s). Exit 1 when behind a target; never crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench._report import run_reporting

PACING_P99_MS = 5.0
ADDED_P99_MS = 5.0


def _ids(n: int) -> list[bytes]:
    """n distinct 20 ms frames that survive the mu-law round trip unchanged (bytes 1..126 only:
    0x7F and 0xFF both decode to 0)."""
    from services.common.audio import ulaw_decode

    out = []
    for k in range(n):
        hi, lo = 1 + (k // 126) % 126, 1 + k % 126
        out.append(ulaw_decode(bytes([hi, lo]) + bytes([0x80]) * 158))
    return out


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


# --- the app (second process) -------------------------------------------------------------

async def _app(port_file: str, stats_file: str, priority: str) -> None:
    from websockets.asyncio.server import serve

    from services.telephony.priority import raise_priority

    raise_priority(priority)

    import orjson  # the app must not be the bottleneck: 100 streams are 5,000 messages/s each way

    async def handler(ws):
        arrivals: list[float] = []
        sid = None
        try:
            async for raw in ws:
                now = time.monotonic()
                m = orjson.loads(raw)
                if m["event"] == "start":
                    sid = m["streamSid"]
                elif m["event"] == "media":
                    if m["media"].get("track", "inbound") == "inbound":
                        arrivals.append(now)
                    await ws.send(orjson.dumps({"event": "media", "streamSid": sid or m.get("streamSid"),
                                                "media": {"payload": m["media"]["payload"]}}), text=True)
                elif m["event"] == "stop":
                    break
        except Exception:  # the far end went away mid-echo: keep what was measured
            pass
        if sid is not None:  # the bare-websockets baseline has no `start`: nothing to write
            with open(stats_file, "a") as f:
                f.write(json.dumps({"sid": sid, "arrivals": arrivals}) + "\n")

    gc.freeze()
    async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=None) as server:
        with open(port_file, "w") as f:
            f.write(str(server.sockets[0].getsockname()[1]))
        await asyncio.Future()


async def _idle_clock(out_file: str, seconds: float, priority: str) -> None:
    """The baseline for pacing: a 20 ms clock doing nothing, in its own process at the
    gateway side's priority, while the streams run: how late this machine wakes such a
    process right now (a virtual machine's own floor shows here)."""
    from services.telephony.priority import raise_priority

    raise_priority(priority)
    loop = asyncio.get_running_loop()
    late: list[float] = []
    next_at = loop.time()
    end = next_at + seconds
    while next_at < end:
        next_at += 0.02
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        late.append((loop.time() - next_at) * 1000)
    with open(out_file, "w") as f:
        json.dump(late, f)


def _spin(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def _busy_clock(out_file: str, seconds: float, priority: str, work_ms: float, slices: int) -> None:
    """The floor for work done on a tick: a 20 ms clock that does, each tick, plain CPU work
    as long as the gateway's median tick, cut into ``slices`` parts (one per stream), and
    times when each part ends, exactly as the gateway's pacing is timed per stream. What
    it shows beyond the idle clock is how much this machine stretches a few milliseconds
    of work now and then (a virtual machine's CPU is not always all there)."""
    from services.telephony.priority import raise_priority

    raise_priority(priority)
    n = 20_000  # calibrate: iterations per slice so that `slices` of them take work_ms
    for _ in range(5):
        t = time.perf_counter()
        _spin(n)
        took = time.perf_counter() - t
        n = max(1, int(n * (work_ms / 1000 / slices) / max(took, 1e-7)))
    ends: list[list[float]] = [[] for _ in range(slices)]
    t0 = time.monotonic() + 0.02
    for k in range(int(seconds * 50)):
        slot = t0 + k * 0.02
        time.sleep(max(0.0, slot - time.monotonic()))
        for j in range(slices):
            _spin(n)
            ends[j].append(time.monotonic() - k * 0.02)
    errs = []
    for offs in ends:
        mid = statistics.median(offs)
        errs += [abs(o - mid) * 1000 for o in offs]
    with open(out_file, "w") as f:
        json.dump(errs, f)


def tick_work_ms(probes: list[Probe]) -> float:
    """The gateway's median tick, in ms: from the first stream's frame to the last one's, in
    each 20 ms tick (every stream's frame to the app leaves during the same tick)."""
    stamps = sorted(t for pr in probes for t in pr.out.values())
    spans, start, last = [], None, None
    for t in stamps:
        if start is None or t - last > 0.004:  # a new tick
            if start is not None:
                spans.append(last - start)
            start = t
        last = t
    return statistics.median(spans) * 1000 if spans else 0.0


# --- measurements -------------------------------------------------------------------------

async def baseline(url: str, frames: list[bytes]) -> list[float]:
    """Bare websockets: one media message every 20 ms, time to its echo (ms)."""
    import base64

    from websockets.asyncio.client import connect

    from services.common.audio import ulaw_encode

    rtts: list[float] = []
    async with connect(url, compression=None) as ws:
        t0 = time.perf_counter()
        for i, f in enumerate(frames):
            await asyncio.sleep(max(0.0, t0 + i * 0.02 - time.perf_counter()))
            msg = json.dumps({"event": "media", "streamSid": "MZbase", "media": {
                "track": "inbound", "chunk": str(i + 1), "timestamp": str(i * 20),
                "payload": base64.b64encode(ulaw_encode(f)).decode()}})
            sent = time.perf_counter()
            await ws.send(msg)
            await ws.recv()
            rtts.append((time.perf_counter() - sent) * 1000)
    return rtts


class Probe:
    """One stream on one sandbox session, timing each frame id out and back."""

    def __init__(self, session, stream, ids: dict[bytes, int]):
        self.session, self.stream, self.ids = session, stream, ids
        self.out: dict[int, float] = {}
        self.back: dict[int, float] = {}
        self.handed: dict[int, float] = {}
        self.wire: dict[int, float] = {}
        self.ticks: list[float] = []
        take = stream.playout.take_frame

        def timed_take() -> bytes | str | None:
            item = take()
            if type(item) is bytes:
                k = ids.get(item)
                if k is not None:
                    self.handed.setdefault(k, time.perf_counter())
            return item

        stream.playout.take_frame = timed_take
        add = stream.playout.add_audio

        def timed_add(pcm: bytes) -> int:
            now = time.perf_counter()
            for i in range(0, len(pcm), 320):
                k = ids.get(pcm[i:i + 320])
                if k is not None:
                    self.back.setdefault(k, now)
            return add(pcm)

        stream.playout.add_audio = timed_add
        session.on_audio(self._inbound)
        session.on_sent_audio(self._sent)

    def _inbound(self, frame: bytes) -> None:
        k = self.ids.get(frame)
        if k is not None:
            self.out.setdefault(k, time.perf_counter())
        self.stream.on_inbound(frame)

    def _sent(self, frame: bytes) -> None:
        self.ticks.append(time.perf_counter())  # every frame into the call, silence included
        k = self.ids.get(frame)
        if k is not None:
            self.wire.setdefault(k, time.perf_counter())

    def rtts(self, where: dict[int, float]) -> list[float]:
        return [(where[k] - t) * 1000 for k, t in self.out.items() if k in where]


async def run_streams(url: str, n: int, seconds: float, frames: list[bytes],
                      bidirectional: bool = True) -> tuple[list[Probe], list[dict]]:
    from services.telephony.carrier import DialRequest
    from services.telephony.sandbox import SandboxCarrier
    from services.telephony.streams.client import MediaStream

    pcm = b"".join(frames[: int(seconds * 50)])

    async def lookup(number, account):
        return {"ring": 0.2, "after": 0.0, "say": "bench"}

    async def speak(req, text, voice):
        return pcm  # the callee "says" the id frames

    carrier = SandboxCarrier(speed=1.0, callee_lookup=lookup, speak=speak)
    reports: list[dict] = []
    probes: list[Probe] = []
    ids = {f: k for k, f in enumerate(frames)}

    async def one(i: int) -> None:
        session = await carrier.dial(DialRequest(call_id=f"call_bench{i}", to="+15551230000", from_="+15559876543",
                                                 account_id="acct_bench"))
        while True:  # answered: the frame clock runs it
            ev = await session.events.get()
            if type(ev).__name__ == "Answered":
                break

        async def report(type: str, data: dict) -> None:
            reports.append({"type": type, **data})

        stream = MediaStream(sid=f"MZbench{i:04d}", call_id=f"call_bench{i}", account_id="acct_bench",
                             options={"url": url, "bidirectional": bidirectional}, session=session, report=report)
        probes.append(Probe(session, stream, ids))
        stream.start()
        await asyncio.sleep(seconds + 1.0)
        await stream.close("call ended")
        await session.hangup()
        session.close()

    await asyncio.gather(*(one(i) for i in range(n)))
    return probes, reports


def pacing_errors(stats_file: str) -> list[float]:
    """|arrival - its 20 ms slot| in ms, the slot fitted per stream (its median offset)."""
    errs: list[float] = []
    with open(stats_file) as f:
        for line in f:
            arr = json.loads(line)["arrivals"]
            if len(arr) < 10:
                continue
            offs = [t - k * 0.02 for k, t in enumerate(arr)]
            mid = statistics.median(offs)
            errs += [abs(o - mid) * 1000 for o in offs]
    return errs


async def main_async(args) -> int:
    os.environ.setdefault("CANARY_ENV", "development")
    os.environ.setdefault("CANARY_ALLOW_PRIVATE_URLS", "1")
    tmp = tempfile.mkdtemp(prefix="bench-streams-")
    port_file, stats_file = os.path.join(tmp, "port"), os.path.join(tmp, "stats")
    from services.common.config import settings

    app_priority = args.app_priority or settings().telephony.media_priority
    app = subprocess.Popen([sys.executable, "-m", "bench.streams", "--app", port_file, stats_file, app_priority])
    try:
        for _ in range(200):
            if os.path.exists(port_file) and open(port_file).read():
                break
            await asyncio.sleep(0.05)
        url = f"ws://127.0.0.1:{open(port_file).read()}/media"
        frames = _ids(int(args.seconds * 50) + 50)
        behind: list[str] = []
        from services.common.service import quiet_gc

        import services.telephony.streams.client  # noqa: F401 - imported before the freeze, as a service is
        quiet_gc()  # as the gateway does once started (services/common/service.py)
        from services.telephony.priority import raise_priority

        wanted = settings().telephony.media_priority
        got = raise_priority(wanted)
        print(f"the gateway side runs at {got} priority (CANARY_MEDIA_PRIORITY={wanted}); the app at {app_priority}")

        base = await baseline(url, frames[:500])
        b50, b99 = pct(base, 50), pct(base, 99)
        print(f"baseline, bare websockets echo of a media message: p50 {b50:.2f} ms, p99 {b99:.2f} ms")

        probes, reports = await run_streams(url, 1, min(args.seconds, 10.0), frames)
        p = probes[0]
        back, hand, wire = p.rtts(p.back), p.rtts(p.handed), p.rtts(p.wire)
        h50, h99 = pct(back, 50), pct(back, 99)
        print(f"1 stream, callee frame -> app -> back in the gateway's playout queue: p50 {h50:.2f} ms"
              f" ({h50 / b50:.2f}x baseline), p99 {h99:.2f} ms ({h99 / b99:.2f}x); added by the gateway"
              f" p50 {h50 - b50:+.2f} ms, p99 {h99 - b99:+.2f} ms (target <= {ADDED_P99_MS:g}); {len(back)} frames")
        print(f"  -> taken by the carrier's tick (after the app's earlier audio): p50 {pct(hand, 50):.2f} ms,"
              f" p99 {pct(hand, 99):.2f} ms; -> on the wire (the tick that sends it): p50 {pct(wire, 50):.1f} ms,"
              f" p99 {pct(wire, 99):.1f} ms (the carrier's 20 ms clock)")
        if not hand or h99 - b99 > ADDED_P99_MS:
            behind.append(f"gateway round trip p99 adds {h99 - b99:.2f} ms over the baseline"
                          f" (target {ADDED_P99_MS:g} ms): {h99 - b99 - ADDED_P99_MS:.2f} ms behind")

        open(stats_file, "w").close()
        clock_file = os.path.join(tmp, "clock")
        idle = subprocess.Popen([sys.executable, "-m", "bench.streams", "--clock", clock_file, str(args.seconds + 1),
                                 got])
        t0, cpu0 = time.perf_counter(), time.process_time()
        probes, reports = await run_streams(url, args.streams, args.seconds, frames, bidirectional=not args.one_way)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        await asyncio.to_thread(idle.wait, 30)
        idle_late = json.load(open(clock_file)) if os.path.exists(clock_file) else []
        await asyncio.sleep(0.5)  # the app writes its stats as each stream stops
        ends = [r for r in reports if r["type"] in ("stream.stopped", "stream.failed")]
        held = sum(1 for r in ends if r["type"] == "stream.stopped" and r["reason"] == "call ended")
        dropped = sum(r["frames_dropped"] for r in ends)
        shed = sum(r["frames_shed"] for r in ends)
        errs = pacing_errors(stats_file)
        e50, e99 = pct(errs, 50), pct(errs, 99)
        hand = [x for pr in probes for x in pr.rtts(pr.back)] or [float("nan")]
        kind = "one-way" if args.one_way else "bidirectional (echoed)"
        print(f"{args.streams} {kind} streams for {args.seconds:g} s ({wall:.1f} s wall): held {held}/{args.streams},"
              f" frames dropped {dropped}, shed {shed}; the gateway side used {100 * cpu / wall:.0f} % of a core")
        ticks = [abs(o - statistics.median(offs)) * 1000 for pr in probes
                 for offs in [[t - k * 0.02 for k, t in sorted(pr.out.items())]] if len(offs) > 10 for o in offs]
        sent = [abs(o - statistics.median(offs)) * 1000 for pr in probes
                for offs in [[t - k * 0.02 for k, t in enumerate(pr.ticks)]] if len(offs) > 10 for o in offs]
        i99 = pct(idle_late, 99)
        print(f"  baseline, an idle 20 ms clock at {got} priority in another process meanwhile: lateness"
              f" p50 {pct(idle_late, 50):.2f} ms, p99 {i99:.2f} ms")
        print(f"  frames to the app, written on the carrier's tick (vs its 20 ms slot): p50 {pct(ticks, 50):.2f} ms,"
              f" p99 {pct(ticks, 99):.2f} ms ({pct(ticks, 99) / i99:.2f}x the idle clock's p99)")
        print(f"  frames into the call, the app's echo among them (the tick that sends each, vs its 20 ms slot):"
              f" p50 {pct(sent, 50):.2f} ms, p99 {pct(sent, 99):.2f} ms ({pct(sent, 99) / i99:.2f}x the idle clock's p99)")
        print(f"  app-side pacing (arrival vs its 20 ms slot): p50 {e50:.2f} ms, p99 {e99:.2f} ms"
              f" (target <= {PACING_P99_MS:g}; {e99 / PACING_P99_MS:.2f}x of it); {len(errs)} frames")
        print(f"  round trip back in the playout queue: p50 {pct(hand, 50):.2f} ms ({pct(hand, 50) / b50:.2f}x baseline),"
              f" p99 {pct(hand, 99):.2f} ms ({pct(hand, 99) / b99:.2f}x)")
        if held < args.streams:
            behind.append(f"{args.streams - held} of {args.streams} streams not held to the end")
        if dropped or shed:
            behind.append(f"{dropped} frames dropped, {shed} shed")
        work = tick_work_ms(probes)
        busy_file = os.path.join(tmp, "busy")
        await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "bench.streams", "--busy-clock", busy_file,
                                                 str(min(args.seconds, 10.0)), got, f"{work:.3f}", str(args.streams)],
                                timeout=60)
        floor = json.load(open(busy_file)) if os.path.exists(busy_file) else []
        f99 = pct(floor, 99)
        print(f"  the gateway's median tick: {work:.2f} ms of work for {args.streams} streams; the same work as plain"
              f" CPU on a 20 ms clock afterwards, timed per slice the same way (the floor for work on a tick):"
              f" p50 {pct(floor, 50):.2f} ms, p99 {f99:.2f} ms; the gateway's send pacing p99 is"
              f" {pct(ticks, 99) / f99:.2f}x it")
        for name, xs in (("frames to the app: send pacing", ticks), ("frames into the call: pacing", sent),
                         ("frames at the app: arrival pacing", errs)):
            if not xs or pct(xs, 99) > PACING_P99_MS:
                behind.append(f"{name} p99 {pct(xs, 99):.2f} ms > {PACING_P99_MS:g} ms:"
                              f" {pct(xs, 99) - PACING_P99_MS:.2f} ms behind")
        for b in behind:
            print("BEHIND:", b)
        return 1 if behind else 0
    finally:
        app.terminate()
        app.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--one-way", action="store_true", help="the many streams only listen (no echo played back)")
    ap.add_argument("--clock", nargs=3, metavar=("OUT_FILE", "SECONDS", "PRIORITY"), help=argparse.SUPPRESS)
    ap.add_argument("--busy-clock", nargs=5, metavar=("OUT_FILE", "SECONDS", "PRIORITY", "WORK_MS", "SLICES"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--app-priority", choices=("realtime", "high", "normal"),
                    help="the echo app's priority (default: the gateway side's, as if on its own machine)")
    ap.add_argument("--app", nargs=3, metavar=("PORT_FILE", "STATS_FILE", "PRIORITY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.clock:
        asyncio.run(_idle_clock(args.clock[0], float(args.clock[1]), args.clock[2]))
        return
    if args.busy_clock:
        out, secs, prio, work, slices = args.busy_clock
        _busy_clock(out, float(secs), prio, float(work), int(slices))
        return
    if args.app:
        try:
            asyncio.run(_app(*args.app))
        except KeyboardInterrupt:
            pass
        return
    run_reporting(main_async(args))


if __name__ == "__main__":
    main()
