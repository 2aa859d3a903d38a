"""A MediaSession with SRTP keys on real loopback sockets: what leaves is SRTP (not PCMU a
listener could play), what arrives is played only once authenticated (tampered, replayed or
plain RTP packets are dropped and counted), and RTCP goes as SRTCP."""

from __future__ import annotations

import socket

from services.telephony.sip import g711
from services.telephony.sip.media import MediaSession, bind_rtp_pair
from services.telephony.sip.rtcp import parse_compound
from services.telephony.sip.rtp import RtpPacket, parse_rtp
from services.telephony.sip.srtp import SrtpContext, SrtpKeys, new_key

from .test_media_session import ManualClock

SUITE = "AES_CM_128_HMAC_SHA1_80"
PEER = ("127.0.0.1", 40002)


async def keyed_session():
    rtp, rtcp = await bind_rtp_pair("127.0.0.1", None)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(1.0)
    rtcp_sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtcp_sink.bind(("127.0.0.1", sink.getsockname()[1] + 1))
    rtcp_sink.settimeout(1.0)
    ours, theirs = new_key(), new_key()
    s = MediaSession("t", ManualClock(), rtp, rtcp, on_dtmf=lambda *a: None, on_media_timeout=lambda: None)
    s.set_remote("127.0.0.1", sink.getsockname()[1], 0, "PCMU", 101, srtp=SrtpKeys(SUITE, ours, theirs))
    s.start(send=True)
    peer = SrtpContext(SrtpKeys(SUITE, theirs, ours))  # the far end: its key sends, ours receives
    return s, sink, rtcp_sink, peer


async def test_what_we_send_is_srtp_and_only_the_peers_key_opens_it():
    s, sink, rtcp_sink, peer = await keyed_session()
    try:
        pcm = (3000).to_bytes(2, "little", signed=True) * 160
        s.set_feed(lambda: pcm)
        s.tick()
        wire = sink.recv(2048)
        header = parse_rtp(wire)  # the RTP header stays readable (RFC 3711 3.1) ...
        assert header.payload_type == 0 and len(wire) == 12 + 160 + 10  # ... plus the 80-bit tag
        assert g711.ulaw_encode(pcm) not in wire  # ... but a listener hears no PCMU
        plain = parse_rtp(peer.unprotect(wire))
        assert plain.payload == g711.ulaw_encode(pcm)

        s.send_rtcp()
        report = parse_compound(peer.unprotect_rtcp(rtcp_sink.recv(2048)))
        assert report and report[0].ssrc == s.out.ssrc
    finally:
        s.close()
        sink.close()
        rtcp_sink.close()


async def test_tampered_replayed_and_plain_packets_are_dropped_counted_and_never_played():
    s, sink, rtcp_sink, peer = await keyed_session()
    s.jitter.depth = 1  # play out the first packet at once
    try:
        payload = g711.ulaw_encode((5000).to_bytes(2, "little", signed=True) * 160)
        good = peer.protect(RtpPacket(0, 1, 160, 77, payload).pack())
        tampered = bytearray(peer.protect(RtpPacket(0, 2, 320, 77, payload).pack()))
        tampered[20] ^= 0x01
        s._on_rtp(bytes(tampered), PEER)
        s._on_rtp(RtpPacket(0, 3, 480, 77, payload).pack(), PEER)  # plain RTP: no tag to check
        s._on_rtp(b"\x80" + bytes(30), PEER)
        assert s.rx_unauthenticated == 3 and s.latched is None and len(s.jitter) == 0
        s._on_rtp(good, PEER)
        assert s.latched == PEER and len(s.jitter) == 1
        s._on_rtp(good, PEER)  # a replay of an authentic packet
        assert s.rx_unauthenticated == 4 and len(s.jitter) == 1
        s._on_rtcp(b"\x81\xc9\x00\x01" + bytes(4), PEER)  # plain RTCP
        assert s.rx_unauthenticated == 5
        s.start_recording()
        s.tick()
        s.tick()
        heard, _ = s.stop_recording()
        # What played: the one authentic frame, then silence (nothing of the rejected ones).
        assert heard == g711.ulaw_decode(payload) + bytes(320)
    finally:
        s.close()
        sink.close()
        rtcp_sink.close()
