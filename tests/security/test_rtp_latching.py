"""RTP latching (docs/security.md, "SIP signalling and media"): a call hears only the
far end the SDP answer named. A blind sender that knows (or scans for) the call's RTP
port must not be able to inject DTMF into an IVR: packets from another IP are dropped,
and once the far end's first packet latched the stream to its source port, so are
packets from any other port of that IP. Real sockets, so the source addresses are the
kernel's."""

from __future__ import annotations

import asyncio
import socket

from services.telephony.sip.dtmf import event_packets
from services.telephony.sip.rtp import RtpPacket
from tests.unit.sip.test_media_session import frame, make_session


def sender(ip: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, 0))
    return s


def dtmf(digit: str, ts: int, ssrc: int) -> list[bytes]:
    return [RtpPacket(101, 100 + i, ts, ssrc, payload, first).pack()
            for i, (payload, first) in enumerate(event_packets(digit, 100))]


async def until(cond, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_dtmf_from_anyone_but_the_latched_far_end_is_dropped():
    s, sink, got = await make_session()  # negotiated far end: 127.0.0.1
    far, same_ip, other_ip = sender("127.0.0.1"), sender("127.0.0.1"), sender("127.0.0.2")
    rtp = ("127.0.0.1", s.local_port)
    try:
        # before the far end sent anything: another IP cannot inject, nor take the latch
        for pkt in dtmf("5", 8000, 0x5):
            other_ip.sendto(pkt, rtp)
        other_ip.sendto(b"\x80\xc8\x00\x06" + bytes(24), ("127.0.0.1", s.local_port + 1))  # RTCP too
        await until(lambda: s.rx_dropped >= len(dtmf("5", 8000, 0x5)) + 1)
        assert s.latched is None

        far.sendto(RtpPacket(0, 1, 160, 0xFA, frame(1000)).pack(), rtp)  # the far end's first packet
        await until(lambda: s.latched is not None)
        assert s.latched == far.getsockname()

        # a blind sender on the far end's own IP, another port: dropped too
        dropped, injected = s.rx_dropped, dtmf("9", 16000, 0x9)
        for pkt in injected:
            same_ip.sendto(pkt, rtp)
        await until(lambda: s.rx_dropped >= dropped + len(injected))

        for pkt in dtmf("1", 24000, 0xFA):  # the far end's own digit still gets through
            far.sendto(pkt, rtp)
        await until(lambda: got["dtmf"] != [])
        await asyncio.sleep(0.05)
        assert got["dtmf"] == ["1"]

        # a re-INVITE naming a new far end: latched again, to it
        s.set_remote("127.0.0.2", 40000, 0, "PCMU", 101)
        assert s.latched is None
        other_ip.sendto(RtpPacket(0, 2, 320, 0xBB, frame(500)).pack(), rtp)
        await until(lambda: s.latched == other_ip.getsockname())
    finally:
        s.close()
        for sock in (sink, far, same_ip, other_ip):
            sock.close()
