"""RTP packet format (RFC 3550 section 5) and the sender's seq/timestamp state."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

_HDR = struct.Struct("!BBHII")


class RtpError(ValueError):
    """Not an RTP packet we accept."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def pack(self) -> bytes:
        """Serialize (version 2, no padding, no extension, no CSRC)."""
        return (
            _HDR.pack(
                0x80,
                (0x80 if self.marker else 0) | (self.payload_type & 0x7F),
                self.seq & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc & 0xFFFFFFFF,
            )
            + self.payload
        )


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse an RTP datagram, skipping CSRCs and header extension, removing padding."""
    if len(data) < 12:
        raise RtpError("short packet")
    b0, b1, seq, ts, ssrc = _HDR.unpack_from(data)
    if b0 >> 6 != 2:
        raise RtpError("not RTP version 2")
    pt = b1 & 0x7F
    if 72 <= pt <= 76:
        raise RtpError("RTCP on the RTP port")  # RFC 5761 demux range
    off = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if len(data) < off + 4:
            raise RtpError("truncated extension")
        off += 4 + 4 * struct.unpack_from("!H", data, off + 2)[0]
    end = len(data)
    if b0 & 0x20:
        if end == 0 or data[-1] == 0 or data[-1] > end - off:
            raise RtpError("bad padding")
        end -= data[-1]
    if off > end:
        raise RtpError("truncated header")
    return RtpPacket(pt, seq, ts, ssrc, bytes(data[off:end]), bool(b1 & 0x80))


class RtpStreamState:
    """Sequence number, timestamp and SSRC of the stream we send.

    Both start random (RFC 3550 5.1); the timestamp advances by samples, so it follows
    the media clock even when a frame is skipped after a scheduling stall.
    """

    def __init__(self, ssrc: int | None = None) -> None:
        self.ssrc = ssrc if ssrc is not None else int.from_bytes(os.urandom(4), "big")
        self.seq = int.from_bytes(os.urandom(2), "big")
        self.timestamp = int.from_bytes(os.urandom(4), "big")
        self.packets = 0
        self.octets = 0
        self.first = True

    def next_packet(self, pt: int, payload: bytes, *, marker: bool = False, ts: int | None = None) -> bytes:
        """Build the next packet; the first packet of the stream carries the marker bit."""
        pkt = RtpPacket(
            pt, self.seq, self.timestamp if ts is None else ts, self.ssrc, payload, marker or self.first
        ).pack()
        self.first = False
        self.seq = (self.seq + 1) & 0xFFFF
        self.packets += 1
        self.octets += len(payload)
        return pkt

    def advance(self, samples: int) -> None:
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
