"""The WebSocket edge of one stream against a real `websockets` server on loopback, with a
stand-in for a carrier's 20 ms send clock (no Kafka): message order, the app's audio played,
marks, clear, and every way a stream fails without touching the call. Real carriers' clocks
play a stream's audio in tests/unit/telephony and tests/e2e/test_media_streams.py."""

from __future__ import annotations

import asyncio
import base64

import orjson
import pytest
from websockets.asyncio.server import serve

from services.common.audio import ulaw_decode, ulaw_encode
from services.telephony.carrier import FRAME_BYTES
from services.telephony.streams import client as sc
from services.telephony.streams.client import MediaStream


class FakeSession:
    """A carrier's send side at real time: every 20 ms it sends the frame its feed gives (silence
    when there is none) and records what the feed gave."""

    def __init__(self):
        self.played: list[bytes] = []
        self.feed = None
        self._clock: asyncio.Task | None = None

    def set_feed(self, feed) -> None:
        self.feed = feed
        if self._clock is None:
            self._clock = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            frame = self.feed() if self.feed is not None else None
            if frame is not None:
                self.played.append(frame)


@pytest.fixture(autouse=True)
def dev_env(monkeypatch):
    monkeypatch.setenv("CANARY_ENV", "development")
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")


async def app_server(handler):
    server = await serve(handler, "127.0.0.1", 0)
    return server, f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/media"


def stream(url: str, session=None, reports=None, **opts) -> MediaStream:
    reports = [] if reports is None else reports

    async def report(type, data):
        reports.append((type, data))

    return MediaStream(sid="MZtest", call_id="call_1", account_id="acct_1", options={"url": url, **opts},
                       session=session or FakeSession(), report=report)


async def until(cond, timeout=5.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.01)


def media(pcm: bytes) -> str:
    return orjson.dumps({"event": "media", "streamSid": "MZtest",
                         "media": {"payload": base64.b64encode(ulaw_encode(pcm)).decode()}}).decode()


async def test_order_media_mark_and_stop():
    got: list[dict] = []
    tone = (b"\x00\x10" * 160)

    async def app(ws):
        async for raw in ws:
            m = orjson.loads(raw)
            got.append(m)
            if m["event"] == "start":
                await ws.send(media(tone * 3))  # 60 ms
                await ws.send('{"event": "mark", "streamSid": "MZtest", "mark": {"name": "said"}}')

    server, url = await app_server(app)
    session, reports = FakeSession(), []
    s = stream(url, session, reports, bidirectional=True, parameters={"who": "test"})
    s.start()
    await until(lambda: reports)
    assert reports[0][0] == "stream.started" and reports[0][1]["parameters"] == {"who": "test"}
    for _ in range(5):
        s.on_inbound(bytes(FRAME_BYTES))
    await until(lambda: any(m["event"] == "mark" for m in got))
    assert len(session.played) == 3  # the mark came back after its audio played
    assert session.played == [ulaw_decode(ulaw_encode(tone))] * 3  # what the app sent, as mu-law carried it
    await s.close("call ended")
    assert session.feed is None  # the stream's audio is no longer the call's
    server.close()
    events = [m["event"] for m in got]
    assert events[:2] == ["connected", "start"] and events[-1] == "stop"
    assert events.count("media") == 5
    assert [m["media"]["chunk"] for m in got if m["event"] == "media"] == ["1", "2", "3", "4", "5"]
    assert reports[-1][0] == "stream.stopped" and reports[-1][1]["reason"] == "call ended"
    assert reports[-1][1]["frames_sent"] == 5 and reports[-1][1]["frames_received"] == 1


async def test_a_frame_leaves_on_its_tick_and_a_key_keeps_its_place():
    """With the socket keeping up, the frame is on the wire when the carrier's tick returns (no
    task wake-up in between); a key pressed between two frames still arrives between them."""
    got: list[dict] = []

    async def app(ws):
        async for raw in ws:
            got.append(orjson.loads(raw))

    server, url = await app_server(app)
    reports = []
    s = stream(url, reports=reports)
    s.start()
    await until(lambda: reports)
    s.on_inbound(bytes(FRAME_BYTES))
    assert s.sent == 1 and not s._queue  # written during the tick itself
    s.on_dtmf("5")
    s.on_inbound(bytes(FRAME_BYTES))  # behind the key: it waits for the writer
    assert s.sent == 1 and len(s._queue) == 2
    await until(lambda: len(got) >= 5)
    assert [m["event"] for m in got[2:5]] == ["media", "dtmf", "media"]
    assert [m["media"]["chunk"] for m in got if m["event"] == "media"] == ["1", "2"]
    await s.close("call ended")
    assert reports[-1][1]["frames_sent"] == 2
    server.close()


async def test_clear_flushes_queued_audio_and_echoes_its_marks():
    got: list[dict] = []

    async def app(ws):
        async for raw in ws:
            m = orjson.loads(raw)
            got.append(m)
            if m["event"] == "start":
                await ws.send(media(bytes(FRAME_BYTES) * 100))  # 2 s
                await ws.send('{"event": "mark", "mark": {"name": "long"}}')
                await asyncio.sleep(0.1)
                await ws.send('{"event": "clear", "streamSid": "MZtest"}')  # barge-in

    server, url = await app_server(app)
    session = FakeSession()
    s = stream(url, session, bidirectional=True)
    s.start()
    await until(lambda: any(m["event"] == "mark" for m in got), timeout=1.0)  # well before 2 s
    assert len(session.played) < 20
    await s.close("call ended")
    server.close()


async def test_a_one_way_streams_app_is_not_played():
    async def app(ws):
        await ws.recv()
        await ws.recv()
        await ws.send(media(bytes(FRAME_BYTES) * 5))
        await asyncio.sleep(0.2)

    server, url = await app_server(app)
    session, reports = FakeSession(), []
    s = stream(url, session, reports)
    s.start()
    await asyncio.sleep(0.3)
    assert session.played == []
    await s.close("call ended")
    server.close()


@pytest.mark.parametrize("url, reason", [
    ("ws://127.0.0.1:9/media", "connect failed"),  # nothing listens: refused
    ("https://127.0.0.1/media", "URL refused"),  # bad URL at runtime (a Kafka producer skipped the API)
])
async def test_connect_failures_are_stream_failed(url, reason):
    reports = []
    s = stream(url, reports=reports)
    s.start()
    await until(lambda: reports)
    assert reports == [("stream.failed", reports[0][1])] and reports[0][1]["reason"].startswith(reason)
    s.on_inbound(bytes(FRAME_BYTES))  # the call's frames go nowhere, harmlessly
    await s.close("call ended")
    assert len(reports) == 1


async def test_connect_timeout(monkeypatch):
    monkeypatch.setattr(sc, "CONNECT_TIMEOUT_S", 0.3)
    sock = await asyncio.start_server(lambda r, w: asyncio.sleep(10), "127.0.0.1", 0)  # accepts, never upgrades
    reports = []
    s = stream(f"ws://127.0.0.1:{sock.sockets[0].getsockname()[1]}/", reports=reports)
    s.start()
    await until(lambda: reports, timeout=2)
    assert reports[0][0] == "stream.failed" and "timed out" in reports[0][1]["reason"]
    sock.close()


@pytest.mark.parametrize("code, type", [(1000, "stream.stopped"), (1011, "stream.failed")])
async def test_app_closing_the_stream(code, type):
    async def app(ws):
        await ws.recv()
        await ws.recv()
        await ws.close(code, "bye")

    server, url = await app_server(app)
    reports = []
    s = stream(url, reports=reports)
    s.start()
    await until(lambda: len(reports) == 2)
    assert reports[1][0] == type and "bye" in reports[1][1]["reason"]
    server.close()


async def test_a_slow_app_loses_the_oldest_frames_never_the_call(monkeypatch):
    monkeypatch.setattr(sc, "SEND_BUFFER", 10)
    release = asyncio.Event()

    async def app(ws):
        await release.wait()  # reads nothing for a while
        async for _ in ws:
            pass

    server, url = await app_server(app)
    reports = []
    s = stream(url, reports=reports)
    s.start()
    await until(lambda: reports)
    frame = bytes(FRAME_BYTES)
    for _ in range(3000):  # 60 s of audio at once: far more than the socket buffers hold
        s.on_inbound(frame)
    await asyncio.sleep(0.2)
    assert s.dropped > 0 and s._queued_media <= 10
    release.set()
    await s.close("call ended")
    assert reports[-1][1]["frames_dropped"] == s.dropped
    server.close()


async def test_an_app_that_stops_reading_fails_the_stream(monkeypatch):
    monkeypatch.setattr(sc, "SEND_STALL_S", 1.0)
    stalled = asyncio.Event()

    async def app(ws):
        await ws.recv()
        await ws.recv()
        await stalled.wait()  # never reads again, never closes

    server, url = await app_server(app)
    reports = []
    s = stream(url, reports=reports)
    s.start()
    await until(lambda: reports)
    big = bytes(FRAME_BYTES)
    loop = asyncio.get_running_loop()
    end = loop.time() + 20
    while len(reports) < 2 and loop.time() < end:  # keep the call's frames coming until the socket is full
        for _ in range(100):
            s.on_inbound(big)
        await asyncio.sleep(0.01)
    assert reports[1][0] == "stream.failed" and reports[1][1]["reason"] == "app stopped reading for 1 s"
    assert loop.time() < end - 10  # soon after the socket filled, not at the next close timeout
    stalled.set()
    server.close()
