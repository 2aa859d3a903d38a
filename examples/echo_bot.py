"""Echo bot: plays the caller's audio back to them, 20 ms frame by 20 ms frame.

    python examples/echo_bot.py            # listens on ws://127.0.0.1:8765/
    # then place a call with "stream": {"url": "ws://127.0.0.1:8765/", "bidirectional": true} (README)

The call lasts as long as the stream: the bot hangs up (closes the WebSocket) after 30 s.
"""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples.twilio_ws import Stream, main  # noqa: E402

MAX_S = 30


async def echo(stream: Stream) -> None:
    async def loop() -> None:
        async for kind, value in stream.events():
            if kind == "audio":
                await stream.play(value)

    try:
        await asyncio.wait_for(loop(), MAX_S)
    except asyncio.TimeoutError:
        await stream.ws.close(1000, "echo bot: time is up")


if __name__ == "__main__":
    main(echo, __doc__.splitlines()[0])
