"""Interop with a Twilio-format client nobody here wrote: a pipecat pipeline is the bot.

A sandbox call whose scripted callee says "Hello, I would like to book a table." streams
to the pipecat bot (tests/interop/streams/pipecat_bot.py, pipecat's own TwilioFrameSerializer
and FastAPI WebSocket transport, served by uvicorn). The bot transcribes the callee, answers
with Piper and ends its pipeline; the call ends with the stream. What the callee heard (our
channel of the call's recording) is transcribed: it is the bot's answer.
"""

from __future__ import annotations

import asyncio
import socket

import orjson
import pytest

pipecat = pytest.importorskip("pipecat")

import uvicorn  # noqa: E402

from examples import voice_brain as brain  # noqa: E402
from services.common import audio  # noqa: E402
from services.common.media_store import LocalMediaStore  # noqa: E402
from tests.e2e.conftest import CORE, _voice_stack  # noqa: E402
from tests.interop.streams.pipecat_bot import make_app  # noqa: E402

pytestmark = [pytest.mark.interop,
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # pipecat 1.14 on its own older API
CALLEE = "+15557770200"
LINE = "Hello, I would like to book a table."


@pytest.fixture(scope="module")
async def voice(request, stack, tmp_path_factory):
    async for vs in _voice_stack(request, stack, tmp_path_factory, CORE, speed=1.0):
        await vs.db.execute("INSERT INTO sandbox_callees (number, account_id, script) VALUES ($1, $2, $3::jsonb)",
                            CALLEE, vs.account, orjson.dumps({"ring": 0.2, "after": 0.5, "say": LINE}).decode())
        yield vs


@pytest.fixture(scope="module")
async def kprod(stack):
    from services.common.kafka import make_producer

    p = make_producer()
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def pipecat_bot():
    seen: dict = {}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(seen), host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    yield f"ws://127.0.0.1:{port}/media", seen
    server.should_exit = True
    await asyncio.wait_for(task, 10)


async def test_pipecat_bot_answers_the_callee(voice, kprod, pipecat_bot):
    url, seen = pipecat_bot
    cid = await voice.place(kprod, to=CALLEE, tts=None, record=True, recording_channels="dual",
                            stream={"url": url, "bidirectional": True, "parameters": {"bot": "pipecat"}})
    end = await voice.wait(cid, "terminal", timeout=90)
    assert end.type == "call.completed", voice.types(cid)
    # pipecat recognised our messages as Twilio's and read the ids from our `start`.
    assert seen["transport_type"] == "twilio"
    assert seen["call_data"]["call_id"] == cid and seen["call_data"]["stream_id"].startswith("MZ")
    assert seen["call_data"]["body"] == {"bot": "pipecat"}
    assert "table" in seen["heard"][0].lower()  # the bot heard the callee through the stream
    stopped = next(e for e in voice.events[cid] if e.type == "stream.stopped")
    assert stopped.data["frames_received"] > 50  # the bot's answer, as media messages
    cap = await voice.wait(cid, "recording.captured", timeout=30)
    ours, _, _ = audio.read_wav(LocalMediaStore().get(cap.data["agent_ref"]))
    heard_by_callee = await asyncio.to_thread(brain.transcribe, ours)
    assert "booked" in heard_by_callee.lower() and "seven" in heard_by_callee.lower(), heard_by_callee
