"""Bridge latency: one-way audio through the gateway between the two legs of a dial step.

    python bench/bridge.py [--seconds 20]

The stack runs as processes (API, orchestrator, gateway, TTS worker, projector); the
account's trunk is a SIPp UAS that answers both legs (the parent call, then the dial
step's second call), each with an SDP naming one of this bench's two UDP sockets (an
injection file gives SIPp the port per call). So this bench is the far end of both legs:
it sends 20 ms PCMU frames of silence on each, and every 500 ms one loud frame (a 1 kHz
tone), alternating the direction; the latency of a burst is the kernel's receive stamp of
the first loud frame out of the other leg minus the time it was sent (both on this
machine's clock). The gateway relays through each leg's jitter buffer and media clock.

Baseline, measured in the same run: a paced relay in another process (what any media
relay must at least do): it takes each frame as it arrives and sends it on its own next
20 ms tick; the same bursts through it, measured the same way. Printed: ours p50/p99 per
direction, the baseline's, and the ratio. Targets (ours; the issue names none): p50 <=
--max-p50-ms (80) and p99 <= --max-p99-ms (150; ITU-T G.114's whole mouth-to-ear budget
for good quality is 150 ms, so the gateway must stay well inside it). Exit 1 when behind
(by how much is printed), 2 when the bench could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import run_reporting  # noqa: E402
from bench._stack import CallStack, pct  # noqa: E402
from services.common import audio  # noqa: E402
from services.lib import trunks  # noqa: E402

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SILENCE = b"\xff" * 160
TONE = audio.ulaw_encode(b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * 1000 * i / 8000)))
                                  for i in range(160)))
UAS = ROOT / "tests/interop/sip/scenarios/uas_answer.xml"


def rtp(seq: int, ts: int, ssrc: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def loud(payload: bytes) -> bool:
    pcm = audio.ulaw_decode(payload)
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    return sum(abs(x) for x in samples) / max(1, len(samples)) > 2000


def udp_socket(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.settimeout(0.2)
    return s


class FarEnd:
    """Both legs' far end: sends on a 20 ms clock, receives with kernel stamps on threads."""

    def __init__(self, a: socket.socket, b: socket.socket, *, senders: tuple[str, ...] = ("a", "b"),
                 peer: dict[str, tuple[str, int]] | None = None) -> None:
        self.socks = {"a": a, "b": b}
        self.senders = senders  # the sides that send (bursts alternate between them)
        self.peer: dict[str, tuple[str, int]] = dict(peer or {})  # learnt from the first packet otherwise
        self.loud_at: dict[str, list[float]] = {"a": [], "b": []}
        self.sent: dict[str, list[float]] = {"a": [], "b": []}  # bursts sent on each side
        self.got = {"a": 0, "b": 0}
        self.stop = threading.Event()
        self.measure = threading.Event()
        self.threads = [threading.Thread(target=self._recv, args=(k,), daemon=True) for k in self.socks]
        self.threads.append(threading.Thread(target=self._send, daemon=True))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _recv(self, side: str) -> None:
        s = self.socks[side]
        while not self.stop.is_set():
            try:
                data, anc, _, addr = s.recvmsg(2048, 64)
            except (socket.timeout, OSError):
                continue
            self.peer.setdefault(side, addr)
            self.got[side] += 1
            stamp = time.time()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, ns = struct.unpack("qq", value[:16])
                    stamp = sec + ns / 1e9
            if len(data) >= 12 + 160 and self.measure.is_set() and loud(data[12:172]):
                self.loud_at[side].append(stamp)

    def _send(self) -> None:
        seq = {"a": 1, "b": 1}
        n = 0
        nxt = time.monotonic()
        while not self.stop.is_set():
            nxt += 0.02
            time.sleep(max(0.0, nxt - time.monotonic()))
            n += 1
            burst = self.measure.is_set() and n % 25 == 0
            side_burst = self.senders[(n // 25) % len(self.senders)]
            for side in self.senders:
                s = self.socks[side]
                if side not in self.peer:
                    continue
                payload = TONE if burst and side == side_burst else SILENCE
                if payload is TONE:
                    self.sent[side].append(time.time())
                s.sendto(rtp(seq[side], seq[side] * 160, 0xB0 + ord(side), payload), self.peer[side])
                seq[side] += 1


def latencies(sent: list[float], arrivals: list[float], window: float = 0.45) -> list[float]:
    """Per burst: the first loud arrival within `window` after it was sent (a burst never
    arrives is simply missing: counted by the caller)."""
    out, j = [], 0
    arrivals = sorted(arrivals)
    for t in sent:
        while j < len(arrivals) and arrivals[j] < t:
            j += 1
        if j < len(arrivals) and arrivals[j] - t <= window:
            out.append(arrivals[j] - t)
    return out


def free_port() -> int:
    """A currently free loopback UDP port (for a process that binds it itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def paced_relay(in_port: int, out_addr: tuple[str, int], stop) -> None:
    """The baseline: frames in, each sent on this relay's next 20 ms tick."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", in_port))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    queue: list[bytes] = []
    nxt = time.monotonic()
    while not stop.is_set():
        nxt += 0.02
        while True:
            try:
                queue.append(rx.recv(2048))
            except BlockingIOError:
                break
        if queue:
            tx.sendto(queue.pop(0), out_addr)
        time.sleep(max(0.0, nxt - time.monotonic()))


def baseline(seconds: float) -> list[float]:
    """The same bursts through `paced_relay` in another process: sent on a, out on b."""
    src, dst = udp_socket(), udp_socket()
    relay_port = free_port()
    stop = mp.Event()
    p = mp.Process(target=paced_relay, args=(relay_port, dst.getsockname(), stop), daemon=True)
    p.start()
    time.sleep(0.3)
    far = FarEnd(src, dst, senders=("a",), peer={"a": ("127.0.0.1", relay_port)})
    far.measure.set()
    far.start()
    time.sleep(seconds)
    far.stop.set()
    stop.set()
    p.join(2)
    return latencies(far.sent["a"], far.loud_at["b"])


async def main(a: argparse.Namespace) -> int:
    if shutil.which("sipp") is None:
        print("BEHIND: sipp is required (Debian package sip-tester)")
        return 2
    os.environ["CANARY_ALLOW_PRIVATE_URLS"] = "1"  # this process stores the trunk (SIPp on loopback)
    sa, sb = udp_socket(), udp_socket()
    work = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    (work / "legs.csv").write_text(f"SEQUENTIAL\n{sa.getsockname()[1]};\n{sb.getsockname()[1]};\n")
    (work / "uas.xml").write_text(UAS.read_text().replace("[$rtp_port]", "[field0]").replace(
        '  <Global variables="rtp_port"/>\n', ""))
    sip_port = free_port()
    uas = None
    env = {"CANARY_SIP_PORT": "0", "CANARY_SIP_BIND": "127.0.0.1", "CANARY_ALLOW_PRIVATE_URLS": "1"}
    far = FarEnd(sa, sb)
    try:
        async with CallStack(rate=1, port=a.port, key_mode="live", env=env) as s:
            uas = subprocess.Popen(
                ["sipp", "-sf", "uas.xml", "-inf", "legs.csv", "-i", "127.0.0.1", "-p", str(sip_port), "-m", "2",
                 "-nostdin"], cwd=work, stdout=open(work / "sipp.out", "wb"), stderr=subprocess.STDOUT)
            await trunks.set_trunk(s.conn, s.account["id"], host="127.0.0.1", port=sip_port)
            flow = {"start": "agent", "steps": {"agent": {"kind": "dial", "to": "+15550177", "timeout": 20}}}
            r = await s.http.post("/v1/voice/calls", json={"to": "+15551234567", "from": "+15559876543",
                                                          "flow": flow})
            if r.status_code not in (200, 201):
                print(f"BEHIND: the call was refused: {r.status_code} {r.text}")
                return 2
            parent = r.json()["id"]
            far.start()
            deadline = time.monotonic() + 30
            while not ("a" in far.peer and "b" in far.peer) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if "b" not in far.peer:
                print(f"BEHIND: the second leg never sent media (legs seen: {sorted(far.peer)})")
                return 2
            await asyncio.sleep(1.5)  # the connect follows the second leg's answer; ringback ends
            far.measure.set()
            await asyncio.sleep(a.seconds)
            far.stop.set()
            await s.http.post(f"/v1/voice/calls/{parent}/hangup")
            await s.wait_ended([parent], 20)
    finally:
        far.stop.set()
        if uas is not None and uas.poll() is None:
            uas.kill()
    base = await asyncio.to_thread(baseline, a.seconds)
    to_a = latencies(far.sent["b"], far.loud_at["a"])  # second party -> caller
    to_b = latencies(far.sent["a"], far.loud_at["b"])  # caller -> second party
    print(f"bursts: second party -> caller {len(to_a)}/{len(far.sent['b'])} arrived, caller -> second party "
          f"{len(to_b)}/{len(far.sent['a'])}; baseline {len(base)}")
    print(f"baseline paced relay: p50 {pct(base, .5):.1f} ms  p99 {pct(base, .99):.1f} ms")
    behind = []
    for name, xs, n in (("second party -> caller", to_a, len(far.sent["b"])),
                        ("caller -> second party", to_b, len(far.sent["a"]))):
        p50, p99 = pct(xs, .5), pct(xs, .99)
        print(f"{name}: p50 {p50:.1f} ms  p99 {p99:.1f} ms  (ratio to the paced relay: p50 "
              f"{p50 / pct(base, .5):.1f}x, p99 {p99 / pct(base, .99):.1f}x)")
        if len(xs) < 0.9 * n:
            behind.append(f"{name}: {n - len(xs)} of {n} bursts never came out")
        if not p50 <= a.max_p50_ms:
            behind.append(f"{name}: p50 {p50:.0f} ms > {a.max_p50_ms:.0f} ms")
        if not p99 <= a.max_p99_ms:
            behind.append(f"{name}: p99 {p99:.0f} ms > {a.max_p99_ms:.0f} ms")
    print("BEHIND: " + "; ".join(behind) if behind else "OK: both directions within the targets")
    return 1 if behind else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--max-p50-ms", type=float, default=80)
    ap.add_argument("--max-p99-ms", type=float, default=150)
    ap.add_argument("--port", type=int, default=18082)
    run_reporting(main(ap.parse_args()))
