import asyncio
import socket

from services.telephony.sip import g711
from services.telephony.sip.media import SILENCE, MediaSession, bind_rtp_pair
from services.telephony.sip.rtp import RtpPacket, parse_rtp


class ManualClock:
    """Stands in for MediaClock: the test calls tick() itself."""

    def add(self, s):
        pass

    def remove(self, s):
        pass

    pacer = None

    def paced(self):
        return None  # every packet is sent at once, as a clock without a pacer does


async def make_session(**kw):
    rtp, rtcp = await bind_rtp_pair("127.0.0.1", None)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    got = {"dtmf": [], "timeout": 0}
    s = MediaSession("t", ManualClock(), rtp, rtcp,
                     on_dtmf=lambda d, ms, m: got["dtmf"].append(d),
                     on_media_timeout=lambda: got.__setitem__("timeout", got["timeout"] + 1), **kw)
    s.set_remote("127.0.0.1", sink.getsockname()[1], 0, "PCMU", 101)
    s.start(send=True)
    return s, sink, got


def frame(value: int) -> bytes:
    return g711.ulaw_encode(value.to_bytes(2, "little", signed=True) * 160)


async def test_recording_aligned_with_loss_filled_by_silence():
    s, sink, _ = await make_session()
    try:
        s.start_recording()
        for seq in (1, 2, 3, 5, 6, 7, 8):  # 4 is lost
            s._on_rtp(RtpPacket(0, seq, seq * 160, 9, frame(1000 * seq)).pack(), ("127.0.0.1", 1))
        play = asyncio.ensure_future(s.play(b"\x01\x00" * 160 * 3))
        await asyncio.sleep(0)
        for _ in range(10):
            s.tick()
        assert await play is True
        callee, ours = s.stop_recording()
        assert len(callee) == len(ours) == 10 * 320
        frames = [callee[i : i + 320] for i in range(0, len(callee), 320)]
        levels = [int.from_bytes(f[:2], "little", signed=True) for f in frames]
        # 3 frames of prefill come out at once, then the hole at seq 4 is silence.
        assert levels[3] == 0 and frames[3] == SILENCE
        assert [round(v, -3) for v in levels[:3]] == [1000, 2000, 3000]
        assert ours[: 3 * 320] == b"\x01\x00" * 160 * 3 and ours[3 * 320 :] == bytes(7 * 320)
        assert s.jitter.stats.lost == 1
        sent = []
        while True:
            try:
                sent.append(parse_rtp(sink.recv(2048)))
            except BlockingIOError:
                break
        assert len(sent) == 10 and sent[0].marker
        assert all(b.timestamp - a.timestamp == 160 and b.seq - a.seq == 1 for a, b in zip(sent, sent[1:]))
    finally:
        s.close()
        sink.close()


async def test_stop_playback_returns_false_and_media_timeout_fires():
    s, sink, got = await make_session(media_timeout_s=0.0)
    try:
        play = asyncio.ensure_future(s.play(bytes(320 * 100)))
        await asyncio.sleep(0)
        s.tick()
        s.stop_playback()
        assert await play is False
        await asyncio.sleep(0.01)
        s.tick()
        s.tick()
        assert got["timeout"] == 1  # reported once
    finally:
        s.close()
        sink.close()


async def test_garbage_rtp_counted_not_raised():
    s, sink, got = await make_session()
    try:
        for junk in (b"", b"\x00" * 40, b"\x80\xe5" + b"\x00" * 10 + b"\x01", b"\xbf" * 20):
            s._on_rtp(junk, ("127.0.0.1", 9))
            s._on_rtcp(junk, ("127.0.0.1", 9))
        assert s.rx_garbage >= 6 and got["dtmf"] == []  # "\x80\xe5...": PT 101 with a 1-byte payload
    finally:
        s.close()
        sink.close()
