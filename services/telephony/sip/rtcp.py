"""RTCP sender/receiver reports (RFC 3550 section 6) for one audio stream."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

SR = 200
RR = 201
SDES = 202
BYE = 203
_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


def ntp_now(wall: float | None = None) -> int:
    """64-bit NTP timestamp of the wall clock."""
    t = time.time() if wall is None else wall
    return (int(t) + _NTP_EPOCH_OFFSET) << 32 | int((t % 1) * (1 << 32))


class ReceiverStats:
    """Reception statistics of the far-end stream (RFC 3550 appendix A.1, A.3, A.8)."""

    def __init__(self) -> None:
        self.ssrc: int | None = None
        self.base_seq = 0
        self.max_seq = 0
        self.cycles = 0
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0
        self._transit: float | None = None
        self.last_sr_ntp_mid = 0  # middle 32 bits of the last SR's NTP time
        self.last_sr_at = 0.0  # monotonic arrival time of that SR

    def update(self, ssrc: int, seq: int, ts: int, arrival_s: float) -> None:
        """Account one received RTP packet (arrival in seconds, any monotonic clock)."""
        if self.ssrc != ssrc:
            # New or changed source: restart statistics (e.g. far end re-INVITEd).
            self.__init__()
            self.ssrc, self.base_seq, self.max_seq = ssrc, seq, seq
        else:
            delta = (seq - self.max_seq) & 0xFFFF
            if 0 < delta < 0x8000:
                if seq < self.max_seq:
                    self.cycles += 1 << 16
                self.max_seq = seq
        self.received += 1
        transit = arrival_s * 8000 - ts
        if self._transit is not None:
            d = abs(transit - self._transit)
            # Transit differences beyond a 32-bit wrap are clock jumps, not jitter.
            if d < 1 << 31:
                self.jitter += (d - self.jitter) / 16
        self._transit = transit

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1 if self.ssrc is not None else 0

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    def report_block(self, now: float) -> bytes:
        """24-byte report block; updates the interval counters for the fraction lost."""
        expected_interval = self.expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior, self.received_prior = self.expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = (lost_interval << 8) // expected_interval if expected_interval > 0 and lost_interval > 0 else 0
        lost = min(self.lost, 0x7FFFFF)
        dlsr = int((now - self.last_sr_at) * 65536) if self.last_sr_ntp_mid else 0
        return struct.pack(
            "!IIIIII",
            self.ssrc or 0,
            (min(fraction, 255) << 24) | lost,
            self.extended_max & 0xFFFFFFFF,
            int(self.jitter) & 0xFFFFFFFF,
            self.last_sr_ntp_mid,
            dlsr & 0xFFFFFFFF,
        )


def build_report(
    ssrc: int,
    cname: str,
    *,
    sent_packets: int,
    sent_octets: int,
    rtp_ts: int | None,
    stats: ReceiverStats | None,
    now: float,
    wall: float | None = None,
) -> bytes:
    """Compound RTCP packet: SR if we have sent RTP (rtp_ts given), else RR; then SDES CNAME."""
    block = stats.report_block(now) if stats is not None and stats.ssrc is not None else b""
    rc = 1 if block else 0
    if rtp_ts is not None:
        ntp = ntp_now(wall)
        body = struct.pack("!IIIIII", ssrc, ntp >> 32, ntp & 0xFFFFFFFF, rtp_ts & 0xFFFFFFFF,
                           sent_packets & 0xFFFFFFFF, sent_octets & 0xFFFFFFFF) + block
        head = struct.pack("!BBH", 0x80 | rc, SR, len(body) // 4)
    else:
        body = struct.pack("!I", ssrc) + block
        head = struct.pack("!BBH", 0x80 | rc, RR, len(body) // 4)
    cn = cname.encode()[:255]
    item = struct.pack("!BB", 1, len(cn)) + cn + b"\x00"  # CNAME item + end of list
    item += b"\x00" * (-(len(item)) % 4)
    sdes = struct.pack("!I", ssrc) + item
    return head + body + struct.pack("!BBH", 0x81, SDES, len(sdes) // 4) + sdes


@dataclass(frozen=True, slots=True)
class RtcpPacketInfo:
    packet_type: int
    ssrc: int
    ntp_mid: int | None = None  # for SR: middle 32 bits of the NTP timestamp


def parse_compound(data: bytes) -> list[RtcpPacketInfo]:
    """Walk a compound RTCP packet; raise ValueError on malformed input."""
    out: list[RtcpPacketInfo] = []
    off = 0
    if len(data) < 8:
        raise ValueError("short RTCP")
    while off + 4 <= len(data):
        b0, pt, length = struct.unpack_from("!BBH", data, off)
        if b0 >> 6 != 2 or not 192 <= pt <= 223:
            raise ValueError("not RTCP")
        size = (length + 1) * 4
        if off + size > len(data):
            raise ValueError("truncated RTCP")
        ssrc = struct.unpack_from("!I", data, off + 4)[0] if size >= 8 else 0
        ntp_mid = None
        if pt == SR and size >= 28:
            hi, lo = struct.unpack_from("!II", data, off + 8)
            ntp_mid = ((hi & 0xFFFF) << 16) | (lo >> 16)
        out.append(RtcpPacketInfo(pt, ssrc, ntp_mid))
        off += size
    return out
