"""Media streams end to end: sandbox calls (real time) with a stream to a Twilio-format test app.

Checked on the real stack: the app gets connected/start/media/stop in order with our call id;
the app's audio is what the callee hears (the call's recording, our channel); a mark comes back
only after its audio played; clear flushes queued audio at once; a stream that cannot open is
`stream.failed` on the timeline and the call goes on.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from services.common import audio
from services.common.media_store import LocalMediaStore
from services.telephony.carrier import FRAME_BYTES
from tests.e2e.conftest import CORE, _voice_stack
from tests.streams_app import StreamApp, as_played, clear_msg, mark_msg, media_msg, tone

pytestmark = pytest.mark.e2e
SPEAKER = "+15557770100"  # a scripted sandbox callee who speaks once answered


@pytest.fixture(scope="module")
async def voice(request, stack, tmp_path_factory):
    # Real time: the stream's pacing and the app's timing are the point here.
    async for vs in _voice_stack(request, stack, tmp_path_factory, CORE, speed=1.0):
        await vs.db.execute("INSERT INTO sandbox_callees (number, account_id, script) VALUES ($1, $2, $3::jsonb)",
                            SPEAKER, vs.account, orjson.dumps({"ring": 0.2, "after": 0.3,
                                                               "say": "Hello, I would like to book a table."}).decode())
        yield vs


def count(frames: list[bytes], frame: bytes) -> int:
    return sum(1 for f in frames if f == frame)


async def agent_channel(vs, call_id: str) -> list[bytes]:
    """Our side of the call's recording (what the callee heard), as 20 ms frames."""
    cap = await vs.wait(call_id, "recording.captured", timeout=30)
    pcm, _, _ = audio.read_wav(LocalMediaStore().get(cap.data["agent_ref"]))
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


async def test_bot_stream_media_marks_clear_and_order(voice, kprod):
    hello = tone(1000, 1000)  # 1 s the callee must hear
    filler = tone(500, 10000)  # 10 s that clear must cut short
    marks: dict[str, float] = {}

    async def bot(conn):
        await conn.send(media_msg(conn.sid, hello))
        await conn.send(mark_msg(conn.sid, "hello"))
        m = await conn.wait_for(lambda m: m["event"] == "mark")
        marks["hello"] = asyncio.get_running_loop().time()
        assert m["mark"]["name"] == "hello"
        await conn.send(media_msg(conn.sid, filler[:len(filler) // 2]))  # 10 s in two messages
        await conn.send(media_msg(conn.sid, filler[len(filler) // 2:]))
        await conn.send(mark_msg(conn.sid, "filler"))
        await asyncio.sleep(0.5)
        sent = asyncio.get_running_loop().time()
        await conn.send(clear_msg(conn.sid))  # barge-in
        m = await conn.wait_for(lambda m: m["event"] == "mark" and m["mark"]["name"] == "filler", timeout=3)
        marks["filler_after_clear"] = asyncio.get_running_loop().time() - sent
        # Hang up once the callee's line came through (its render may take a while on a busy machine).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while sum(1 for f in conn.media("inbound") if max(f) > 0) <= 25 and loop.time() < deadline:
            await asyncio.sleep(0.1)
        await conn.ws.close(1000, "bot done")

    async with StreamApp(bot) as app:
        cid = await voice.place(kprod, to=SPEAKER, tts=None, record=True, recording_channels="dual",
                                stream={"url": app.url, "track": "both", "bidirectional": True,
                                        "parameters": {"greeting": "hi"}})
        end = await voice.wait(cid, "terminal", timeout=90)
    assert end.type == "call.completed", voice.types(cid)
    conn = app.conns[0]
    ev = conn.events()
    # Twilio's order: connected, start, then media; the app closed, so no stop from us.
    assert ev[:2] == ["connected", "start"] and "stop" not in ev
    assert conn.start["callSid"] == cid and conn.start["customParameters"] == {"greeting": "hi"}
    assert conn.start["tracks"] == ["inbound", "outbound"]
    assert conn.start["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    inbound, outbound = conn.media("inbound"), conn.media("outbound")
    assert sum(1 for f in inbound if max(f) > 0) > 25  # the scripted callee's line reached the app
    # The mark came back once its audio had played: every frame of it went out before the echo.
    frame = as_played(hello[:FRAME_BYTES])
    idx = [i for i, (_, m) in enumerate(conn.messages) if m["event"] == "mark" and m["mark"]["name"] == "hello"][0]
    before = [as_played(f) for f in conn.media("outbound", upto=idx)]
    assert count(before, frame) == count(outbound, frame) == 50
    # clear: the 10 s filler stopped at once and its mark came straight back.
    assert marks["filler_after_clear"] < 1.0  # at once: not after the 9.5 s still queued
    assert count(outbound, as_played(filler[:FRAME_BYTES])) < 5 * 50
    # The callee heard the app: our channel of the recording has the whole greeting.
    heard = await agent_channel(voice, cid)
    assert count(heard, frame) == 50
    types = voice.types(cid)
    assert types.index("call.answered") < types.index("stream.started") < types.index("stream.stopped")
    stopped = next(e for e in voice.events[cid] if e.type == "stream.stopped")
    assert stopped.data["reason"] == "app closed the stream: bot done" and stopped.data["frames_received"] >= 3
    hangup = next(e for e in voice.events[cid] if e.type == "hangup.requested")
    assert hangup.data["reason"] == "stream ended"  # a bot's call lasts as long as its stream


async def test_one_way_stream_gets_stop_when_the_call_ends(voice, kprod):
    async with StreamApp() as app:
        cid = await voice.place(kprod, to=SPEAKER, stream={"url": app.url})
        end = await voice.wait(cid, "terminal", timeout=60)
        await asyncio.wait_for(app.conns[0].closed.wait(), 5)
    assert end.type == "call.completed"
    ev = app.conns[0].events()
    assert ev[:2] == ["connected", "start"] and ev[-1] == "stop" and set(ev[2:-1]) == {"media"}
    assert [m["media"]["track"] for _, m in app.conns[0].messages if m["event"] == "media"][:1] == ["inbound"]
    types = voice.types(cid)
    # The prompt played and the script hung up as without a stream; the stream stopped before the call's end.
    assert "prompt.finished" in types
    assert types.index("stream.stopped") < types.index("call.completed")
    assert next(e for e in voice.events[cid] if e.type == "stream.stopped").data["reason"] == "call ended"


@pytest.mark.parametrize("url, reason", [
    ("ws://127.0.0.1:9/media", "connect failed"),  # nobody listens: refused
    ("wss://stream-host.invalid/media", "URL refused: cannot resolve"),  # a name that does not resolve
])
async def test_a_stream_that_cannot_open_fails_and_the_call_goes_on(voice, kprod, url, reason):
    cid = await voice.place(kprod, stream={"url": url, "bidirectional": True})
    end = await voice.wait(cid, "terminal", timeout=60)
    failed = next(e for e in voice.events[cid] if e.type == "stream.failed")
    assert failed.data["reason"].startswith(reason), failed.data
    types = voice.types(cid)
    # The prompt still played, then the call ended: the bot it waited for is not coming.
    assert "prompt.finished" in types and end.type == "call.completed"


async def test_flow_stream_step(voice, kprod):
    async def bot(conn):
        await conn.send(media_msg(conn.sid, tone(1000, 400)))
        await conn.send(mark_msg(conn.sid, "done"))
        await conn.wait_for(lambda m: m["event"] == "mark")
        await conn.ws.close(1000)

    flow = {"start": "bot", "steps": {"bot": {"kind": "stream", "url": "", "bidirectional": True, "next": "bye"},
                                      "bye": {"kind": "say", "text": "Goodbye."}}}
    async with StreamApp(bot) as app:
        flow["steps"]["bot"]["url"] = app.url
        cid = await voice.place(kprod, tts=None, flow=flow)
        end = await voice.wait(cid, "terminal", timeout=60)
    types = voice.types(cid)
    assert end.type == "call.completed"
    assert types.index("stream.started") < types.index("stream.stopped") < types.index("prompt.finished")
    assert next(e for e in voice.events[cid] if e.type == "stream.started").data["step"] == "bot"


@pytest.fixture
async def example_bot(request):
    """Serve one of examples/ (echo_bot, ivr_bot) in this process on a free port."""
    import socket

    from examples.twilio_ws import serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    task = asyncio.create_task(serve(request.param, "127.0.0.1", port))
    await asyncio.sleep(0.3)
    yield f"ws://127.0.0.1:{port}/"
    task.cancel()


def _echo():
    from examples.echo_bot import echo

    return echo


def _ivr():
    from examples.ivr_bot import ivr

    return ivr


async def _heard_by_callee(voice, cid: str) -> str:
    from examples import voice_brain

    cap = await voice.wait(cid, "recording.captured", timeout=30)
    pcm, _, _ = audio.read_wav(LocalMediaStore().get(cap.data["agent_ref"]))
    return (await asyncio.to_thread(voice_brain.transcribe, pcm)).lower()


@pytest.mark.parametrize("example_bot", [_echo()], indirect=True, ids=["echo_bot"])
async def test_echo_bot_example_plays_the_callee_back(voice, kprod, example_bot):
    cid = await voice.place(kprod, to=SPEAKER, tts=None, record=True, recording_channels="dual",
                            stream={"url": example_bot, "bidirectional": True})
    await voice.wait(cid, "stream.started", timeout=30)
    await asyncio.sleep(5)  # the callee's line, echoed
    await voice.hangup(kprod, cid)
    await voice.wait(cid, "terminal", timeout=30)
    assert "table" in await _heard_by_callee(voice, cid)  # the callee heard themselves


@pytest.mark.parametrize("example_bot", [_ivr()], indirect=True, ids=["ivr_bot"])
async def test_ivr_bot_example_answers_the_callee(voice, kprod, example_bot):
    cid = await voice.place(kprod, to=SPEAKER, tts=None, record=True, recording_channels="dual",
                            stream={"url": example_bot, "bidirectional": True})
    end = await voice.wait(cid, "terminal", timeout=90)
    assert end.type == "call.completed" and "stream.stopped" in voice.types(cid)  # the bot hung up
    heard = await _heard_by_callee(voice, cid)
    # Its answer to what the callee said (the greeting may be cut: the callee talks over it, a barge-in).
    # Whisper writes the hour as a word or a digit, depending on where the barge-in cut the audio.
    assert "booked" in heard and ("seven" in heard or "7" in heard), heard
