"""The app side of a Twilio Media Streams WebSocket, on `websockets`: what both example bots share.

A bot is an async function ``bot(stream)``; ``serve(bot, port)`` runs it once per call.
``Stream`` reads the ``connected``/``start`` handshake, then yields the call's audio and
keys, and sends audio (``play``), ``mark`` and ``clear`` the way a Twilio app does, so the
same bot works against Twilio by pointing Twilio at it instead.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from typing import AsyncIterator, Awaitable, Callable

from websockets.asyncio.server import ServerConnection, serve as ws_serve

from services.common.audio import ulaw_decode, ulaw_encode


class Stream:
    def __init__(self, ws: ServerConnection):
        self.ws = ws
        self.sid = ""
        self.call_id = ""
        self.parameters: dict[str, str] = {}
        self.marks: asyncio.Queue[str] = asyncio.Queue()

    async def handshake(self) -> None:
        """Wait for `start` (after `connected`): the stream's ids and the call's custom parameters."""
        async for raw in self.ws:
            msg = json.loads(raw)
            if msg["event"] == "start":
                self.sid = msg["streamSid"]
                self.call_id = msg["start"]["callSid"]
                self.parameters = msg["start"].get("customParameters", {})
                return

    async def events(self) -> AsyncIterator[tuple[str, object]]:
        """("audio", 16-bit 8 kHz PCM frame) | ("dtmf", digit) | ("mark", name) until `stop` or close."""
        async for raw in self.ws:
            msg = json.loads(raw)
            kind = msg["event"]
            if kind == "media":
                yield "audio", ulaw_decode(base64.b64decode(msg["media"]["payload"]))
            elif kind == "dtmf":
                yield "dtmf", msg["dtmf"]["digit"]
            elif kind == "mark":
                await self.marks.put(msg["mark"]["name"])
                yield "mark", msg["mark"]["name"]
            elif kind == "stop":
                return

    async def play(self, pcm: bytes, chunk_ms: int = 20) -> None:
        """Queue 16-bit 8 kHz PCM to be played into the call (sent as mu-law, in chunks)."""
        step = 16 * chunk_ms
        for i in range(0, len(pcm), step):
            await self.ws.send(json.dumps({"event": "media", "streamSid": self.sid,
                                           "media": {"payload": base64.b64encode(ulaw_encode(pcm[i:i + step])).decode()}}))

    async def mark(self, name: str) -> None:
        """Ask to be told (a `mark` back) when everything queued so far has been played."""
        await self.ws.send(json.dumps({"event": "mark", "streamSid": self.sid, "mark": {"name": name}}))

    async def clear(self) -> None:
        """Barge-in: drop the audio still queued."""
        await self.ws.send(json.dumps({"event": "clear", "streamSid": self.sid}))


Bot = Callable[[Stream], Awaitable[None]]


async def serve(bot: Bot, host: str, port: int) -> None:
    async def handler(ws: ServerConnection) -> None:
        stream = Stream(ws)
        await stream.handshake()
        print(f"stream {stream.sid} for call {stream.call_id} {stream.parameters or ''}", flush=True)
        await bot(stream)

    async with ws_serve(handler, host, port, compression=None) as server:
        print(f"listening on ws://{host}:{port}/", flush=True)
        await server.serve_forever()


def main(bot: Bot, description: str, port: int = 8765) -> None:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=port)
    args = ap.parse_args()
    try:
        asyncio.run(serve(bot, args.host, args.port))
    except KeyboardInterrupt:
        pass
