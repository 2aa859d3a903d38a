"""Fixtures for SIP interop: SIPp / baresip processes on random loopback ports, an RTP
listener thread the tests control, and a pure-Python pcap writer for SIPp replays."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.telephony.carrier import TrunkConfig
from services.telephony.sip import SipCarrier
from services.telephony.sip.dtmf import event_packets
from services.telephony.sip.rtp import RtpPacket, parse_rtp

SCENARIOS = Path(__file__).parent / "scenarios"
LOOPBACK = "127.0.0.1"
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS has the same value

pytestmark = pytest.mark.interop


def free_udp_port(even: bool = False) -> int:
    """A currently free loopback UDP port (and port+1 too, when ``even``)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if not even:
            return port
        if port % 2 == 0 and port < 65534:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s2:
                    s2.bind((LOOPBACK, port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def free_tcp_port() -> int:
    """A currently free loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class SippProcess:
    """A SIPp UAS running one scenario for exactly one call; with ``call`` (``(host:port, user)``)
    a UAC calling that user there instead, from ``ip``."""

    def __init__(self, scenario: str, workdir: Path, *, sets: dict[str, str] | None = None,
                 call: tuple[str, str] | None = None, ip: str = LOOPBACK, transport: str = "udp",
                 extra: list[str] | None = None) -> None:
        self.transport = transport
        self.port = free_udp_port() if transport == "udp" else free_tcp_port()
        self.media_port = free_udp_port(even=True)
        self.workdir = workdir
        args = [
            "sipp", "-sf", str(SCENARIOS / scenario), "-i", ip, "-p", str(self.port),
            "-mi", ip, "-mp", str(self.media_port), "-m", "1", "-nostdin",
            "-trace_err", "-timeout", "60s", "-timeout_error",
        ]
        if transport == "tcp":
            args += ["-t", "t1"]  # SIP over one TCP connection
        args += extra or []
        for k, v in (sets or {}).items():
            args += ["-set", k, v]
        if call is not None:
            args += ["-s", call[1], call[0]]
        self.log = open(workdir / f"{scenario}.out", "wb")
        self.proc = subprocess.Popen(args, cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT)
        time.sleep(0.3)  # let it bind; our INVITE retransmissions cover a slower start

    @property
    def trunk(self) -> TrunkConfig:
        return TrunkConfig(host=LOOPBACK, port=self.port, transport=self.transport)

    def wait(self, timeout: float = 15.0) -> int:
        """Exit code: 0 when SIPp's scenario completed successfully."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -1

    def errors(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self.workdir.glob("*_errors.log"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def sipp(tmp_path):
    if shutil.which("sipp") is None:
        pytest.skip("sipp (Debian package sip-tester) is not installed")
    started: list[SippProcess] = []

    def start(scenario: str, **kw) -> SippProcess:
        p = SippProcess(scenario, tmp_path, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@dataclass
class Received:
    at: float
    pkt: RtpPacket


@dataclass
class RtpListener:
    """Blocking UDP receiver on its own thread. A packet's time is the kernel's receive
    timestamp (SO_TIMESTAMPNS; on loopback that is when it was sent), so neither this
    thread's nor the event loop's scheduling on a busy machine counts. Also listens on
    port+1 for RTCP."""

    port: int = 0
    packets: list[Received] = field(default_factory=list)
    rtcp: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_udp_port(even=True)
        self._socks = []
        for p in (self.port, self.port + 1):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            except OSError:  # no kernel timestamps: the thread's own clock (same epoch) instead
                pass
            s.bind((LOOPBACK, p))
            s.settimeout(0.1)
            self._socks.append(s)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(s, i == 1), daemon=True)
                         for i, s in enumerate(self._socks)]
        for t in self._threads:
            t.start()

    def _run(self, sock: socket.socket, is_rtcp: bool) -> None:
        while not self._stop.is_set():
            try:
                data, cmsgs, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(16))
            except TimeoutError:
                continue
            except OSError:
                return
            now = next((sec + ns * 1e-9 for level, typ, c in cmsgs
                        if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS
                        for sec, ns in [struct.unpack("qq", c[:16])]), None) or time.time()
            if is_rtcp:
                self.rtcp.append(data)
            else:
                try:
                    self.packets.append(Received(now, parse_rtp(data)))
                except ValueError:
                    pass

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(1)
        for s in self._socks:
            s.close()


def lateness_ms(audio: list[Received]) -> list[float]:
    """How late (ms) each packet arrived against the 20 ms schedule its RTP timestamp
    implies, counted from the first packet (so the first is 0; negative is early)."""
    first = audio[0]
    return [(r.at - first.at) * 1000 - 20.0 * (((r.pkt.timestamp - first.pkt.timestamp) & 0xFFFFFFFF) / 160)
            for r in audio]


@pytest.fixture
def rtp_listener():
    r = RtpListener()
    yield r
    r.close()


@pytest.fixture
async def carrier():
    c = SipCarrier(local_ip=LOOPBACK, media_timeout_s=30.0, rtcp_interval_s=1.0)
    yield c
    await c.close()


def write_dtmf_pcap(path: Path, digits: str, *, pt: int = 101, src_port: int = 4000, dst_port: int = 4002) -> None:
    """Write a libpcap file of RFC 4733 packets (100 ms per digit, 3 end packets, 100 ms
    gaps), Ethernet/IPv4/UDP framed, for SIPp's play_pcap_audio to replay."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    seq, ts, t = 1000, 50000, 1.0
    for digit in digits:
        for payload, marker in event_packets(digit, 100):
            rtp = RtpPacket(pt, seq, ts, 0xC0FFEE, payload, marker).pack()
            out.append(_frame(t, rtp, src_port, dst_port))
            seq += 1
            t += 0.02
        ts += 8 * 200  # next event starts 200 ms later
        t += 0.1
    path.write_bytes(b"".join(out))


def write_pcmu_pcap(path: Path, pcm: bytes, *, src_port: int = 4000, dst_port: int = 4002) -> None:
    """Write a libpcap file of PCMU RTP (20 ms packets) carrying 8 kHz s16le `pcm`, for
    SIPp's play_pcap_audio (the callee's voice, or in-band DTMF tones)."""
    from services.common import audio

    ulaw = audio.ulaw_encode(pcm)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i in range(0, len(ulaw) - 159, 160):
        rtp = RtpPacket(0, 2000 + i // 160, 80000 + i, 0xBEEF, ulaw[i:i + 160], i == 0).pack()
        out.append(_frame(1.0 + i / 8000, rtp, src_port, dst_port))
    path.write_bytes(b"".join(out))


def _frame(t: float, payload: bytes, sport: int, dport: int) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip_wo_sum = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                            socket.inet_aton(LOOPBACK), socket.inet_aton(LOOPBACK))
    csum = sum(struct.unpack("!10H", ip_wo_sum))
    csum = (csum & 0xFFFF) + (csum >> 16)
    csum = ~((csum & 0xFFFF) + (csum >> 16)) & 0xFFFF
    ip = ip_wo_sum[:10] + struct.pack("!H", csum) + ip_wo_sum[12:]
    frame = b"\x00" * 6 + b"\x02" + b"\x00" * 5 + b"\x08\x00" + ip + udp
    return struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)) + frame
