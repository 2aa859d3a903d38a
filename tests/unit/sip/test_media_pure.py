import math
import random
import struct
from array import array

import pytest

from services.telephony.sip import g711
from services.telephony.sip.dtmf import (
    GoertzelDetector,
    TelephoneEvent,
    TelephoneEventReceiver,
    event_packets,
    parse_event,
    tone,
)
from services.telephony.sip.jitter import JitterBuffer
from services.telephony.sip.rtcp import RR, SDES, SR, ReceiverStats, build_report, parse_compound
from services.telephony.sip.rtp import RtpError, RtpPacket, RtpStreamState, parse_rtp


def test_g711_roundtrip_error_small():
    pcm = array("h", [0, 1, -1, 100, -100, 1000, -1000, 12345, -12345, 32767, -32768]).tobytes()
    for enc, dec in ((g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)):
        out = array("h")
        out.frombytes(dec(enc(pcm)))
        for a, b in zip(array("h", pcm), out):
            assert abs(a - b) <= max(16, abs(a) // 16)  # G.711 keeps ~4 mantissa bits
    assert g711.ulaw_encode(bytes(2)) == b"\xff" and g711.alaw_encode(bytes(2)) == b"\xd5"
    # Known code points: mu-law 0x00 is -32124, A-law 0x55 is -8.
    assert g711.ulaw_decode(b"\x00") == struct.pack("<h", -32124)
    assert g711.alaw_decode(b"\x55") == struct.pack("<h", -8)


def test_rtp_pack_parse_and_stream_state():
    st = RtpStreamState(ssrc=0x1234)
    st.seq, st.timestamp = 0xFFFF, 0xFFFFFF00
    p1 = parse_rtp(st.next_packet(0, b"\xff" * 160))
    st.advance(160)
    p2 = parse_rtp(st.next_packet(0, b"\xff" * 160))
    assert p1.marker and not p2.marker
    assert (p1.seq, p2.seq) == (0xFFFF, 0) and p2.timestamp == (0xFFFFFF00 + 160) & 0xFFFFFFFF
    assert p1.ssrc == p2.ssrc == 0x1234 and len(p1.payload) == 160
    # CSRC + extension + padding are skipped
    raw = bytearray(RtpPacket(8, 5, 6, 7, b"abc").pack())
    raw[0] |= 0x30 | 0x01
    raw[12:12] = b"\x00\x00\x00\x09" + b"\xbe\xde\x00\x01" + b"\x00" * 4
    raw += b"\x00\x00\x03"  # 3 bytes of padding
    pkt = parse_rtp(bytes(raw))
    assert pkt.payload == b"abc" and pkt.payload_type == 8
    for bad in (b"", b"\x00" * 12, b"\x80\xc8" + b"\x00" * 10):
        with pytest.raises(RtpError):
            parse_rtp(bad)


def test_jitter_reorder_and_loss():
    jb = JitterBuffer(depth=3)
    for seq in (10, 12, 11, 14, 15, 16):  # 13 lost, 11/12 reordered
        jb.push(seq, bytes([seq]))
    out = [jb.pop() for _ in range(7)]
    assert out == [b"\x0a", b"\x0b", b"\x0c", None, b"\x0e", b"\x0f", b"\x10"]
    assert jb.stats.lost == 1 and jb.stats.reordered == 1
    jb.push(13, b"late")
    assert jb.stats.late == 1
    jb.push(16, b"dup")  # already played -> late; a dup in-buffer counts as duplicate
    jb.push(17, b"x")
    jb.push(17, b"x")
    assert jb.stats.duplicates == 1


def test_jitter_wraparound_and_resync():
    jb = JitterBuffer(depth=2)
    for seq in (65534, 65535, 0, 1):
        jb.push(seq, bytes([seq & 0xFF]))
    assert [jb.pop() for _ in range(4)] == [b"\xfe", b"\xff", b"\x00", b"\x01"]
    assert jb.pop() is None and jb.stats.lost == 0  # empty buffer is underrun, not loss
    jb.push(30000, b"a")  # far jump: new stream
    assert jb.stats.resyncs == 1


def test_telephone_event_receive_dedupes_end_packets():
    rx = TelephoneEventReceiver()
    got = []
    ts = 1000
    for digit in "1234#":
        for payload, _marker in event_packets(digit, 100):
            got += rx.feed(ts, payload)
        ts += 2000
    assert [d for d, _ in got] == list("1234#")
    assert all(dur == 100 for _, dur in got)
    # end packets all lost: the next event flushes the previous digit once
    rx2 = TelephoneEventReceiver()
    out = rx2.feed(1, TelephoneEvent(5, False, 10, 160).pack())
    out += rx2.feed(2000, TelephoneEvent(6, True, 10, 800).pack())
    out += rx2.feed(2000, TelephoneEvent(6, True, 10, 800).pack())
    assert [d for d, _ in out] == ["5", "6"]
    assert parse_event(b"\x0b\x8a\x03\x20") == TelephoneEvent(11, True, 10, 800)


def test_event_packets_shape():
    pk = event_packets("9", 100)
    assert len(pk) == 4 + 3 and pk[0][1] is True and not any(m for _, m in pk[1:])
    evs = [parse_event(p) for p, _ in pk]
    assert [e.end for e in evs] == [False] * 4 + [True] * 3
    assert evs[-1].duration == 800 and evs[0].duration == 160


def _noise(n, amp, seed=1):
    r = random.Random(seed)
    return array("h", (int(r.gauss(0, amp)) for _ in range(n))).tobytes()


def _mix(a: bytes, b: bytes) -> bytes:
    x, y = array("h"), array("h")
    x.frombytes(a)
    y.frombytes(b)
    return array("h", (max(-32768, min(32767, p + q)) for p, q in zip(x, y))).tobytes()


def test_goertzel_detects_digits_once_through_g711():
    pcm = b""
    for d in "159*0#D":
        pcm += tone(d, 80) + bytes(2 * 8 * 60)
    pcm = g711.ulaw_decode(g711.ulaw_encode(_mix(pcm, _noise(len(pcm) // 2, 200))))
    det = GoertzelDetector()
    got = []
    for i in range(0, len(pcm), 320):  # fed in 20 ms frames like the media tick
        got += [d for d, _ in det.feed(pcm[i : i + 320])]
    assert got == list("159*0#D")


def test_goertzel_ignores_speechlike_and_single_tones():
    det = GoertzelDetector()
    single = array("h", (int(8000 * math.sin(2 * math.pi * 1000 * i / 8000)) for i in range(8000))).tobytes()
    assert det.feed(single) == []
    assert det.feed(_noise(8000, 4000)) == []


def test_rtcp_sr_rr_roundtrip():
    stats = ReceiverStats()
    for i, seq in enumerate((100, 101, 103)):
        stats.update(0xAA, seq, i * 160, i * 0.02)
    assert stats.expected == 4 and stats.lost == 1
    sr = build_report(0x55, "cname", sent_packets=10, sent_octets=1600, rtp_ts=1234, stats=stats, now=1.0)
    info = parse_compound(sr)
    assert [p.packet_type for p in info] == [SR, SDES] and info[0].ssrc == 0x55 and info[0].ntp_mid is not None
    assert len(sr) % 4 == 0 and sr[0] & 0x1F == 1  # one report block
    block = sr[28:52]
    fraction_lost, cum = block[4], int.from_bytes(block[5:8], "big")
    assert cum == 1 and fraction_lost == 64  # 1 of 4 expected = 25 %
    rr = build_report(0x55, "c", sent_packets=0, sent_octets=0, rtp_ts=None, stats=None, now=1.0)
    assert [p.packet_type for p in parse_compound(rr)] == [RR, SDES]
    with pytest.raises(ValueError):
        parse_compound(b"\x00" * 3)
    with pytest.raises(ValueError):
        parse_compound(b"\x80\xc8\x00\x09" + b"\x00" * 8)
