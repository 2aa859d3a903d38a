"""IVR bot: greets the caller, listens (endpointer + faster-whisper), answers with Piper, hangs up.

    python examples/ivr_bot.py             # listens on ws://127.0.0.1:8766/
    # then place a call with "stream": {"url": "ws://127.0.0.1:8766/", "bidirectional": true} (README)

The caller can barge in: speaking while the bot talks clears the bot's queued audio.
The bot hangs up (closes the stream) once its answer has played (it asks for a `mark`).
"""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import voice_brain as brain  # noqa: E402
from examples.twilio_ws import Stream, main  # noqa: E402

LISTEN_S = 12  # no utterance by then: say goodbye


async def say(stream: Stream, text: str, name: str) -> None:
    pcm = await asyncio.to_thread(brain.speak, text)
    await stream.play(pcm, chunk_ms=200)
    await stream.mark(name)


async def ivr(stream: Stream) -> None:
    await say(stream, brain.GREETING, "greeting")
    ep, speaking, reply = brain.utterances(), True, None

    async def listen() -> bytes | None:
        nonlocal speaking
        async for kind, value in stream.events():
            if kind == "mark" and value == "greeting":
                speaking = False
            elif kind == "audio":
                r = ep.feed(value)
                if r == "started" and speaking:
                    await stream.clear()  # barge-in: the caller talks over the greeting
                elif r == "ended":
                    return ep.audio()
        return None

    try:
        utterance = await asyncio.wait_for(listen(), LISTEN_S)
    except asyncio.TimeoutError:
        utterance = b""
    if utterance is None:
        return  # the call ended
    heard = await asyncio.to_thread(brain.transcribe, utterance) if utterance else ""
    reply = brain.answer(heard)
    print(f"heard {heard!r} -> {reply!r}", flush=True)
    await say(stream, reply, "reply")
    async for kind, value in stream.events():
        if kind == "mark" and value == "reply":
            break
    await stream.ws.close(1000, "ivr bot: done")


if __name__ == "__main__":
    main(ivr, __doc__.splitlines()[0], port=8766)
