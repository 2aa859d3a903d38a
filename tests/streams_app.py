"""A Twilio-format media stream app for tests and benches: a `websockets` server that
records every message it gets (with arrival times) and runs a script per connection."""

from __future__ import annotations

import asyncio
import base64
import math
import time
from typing import Any, Awaitable, Callable

import orjson
from websockets.asyncio.server import ServerConnection, serve

from services.common.audio import ulaw_decode, ulaw_encode

FRAME_SAMPLES = 160


def tone(hz: float, ms: int, amplitude: int = 8000) -> bytes:
    """16-bit PCM at 8 kHz; a whole number of periods per 20 ms frame for 50 Hz multiples."""
    n = 8 * ms
    return b"".join(int(amplitude * math.sin(2 * math.pi * hz * i / 8000)).to_bytes(2, "little", signed=True)
                    for i in range(n))


def as_played(pcm: bytes) -> bytes:
    """What the call plays of `pcm` sent as mu-law (the round trip through G.711)."""
    return ulaw_decode(ulaw_encode(pcm))


def media_msg(sid: str, pcm: bytes) -> str:
    return orjson.dumps({"event": "media", "streamSid": sid,
                         "media": {"payload": base64.b64encode(ulaw_encode(pcm)).decode()}}).decode()


def mark_msg(sid: str, name: str) -> str:
    return orjson.dumps({"event": "mark", "streamSid": sid, "mark": {"name": name}}).decode()


def clear_msg(sid: str) -> str:
    return orjson.dumps({"event": "clear", "streamSid": sid}).decode()


class Conn:
    """One stream as the app saw it."""

    def __init__(self, ws: ServerConnection):
        self.ws = ws
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.changed = asyncio.Event()
        self.sid: str | None = None
        self.start: dict[str, Any] | None = None
        self.closed = asyncio.Event()

    def events(self) -> list[str]:
        return [m["event"] for _, m in self.messages]

    def media(self, track: str, upto: int | None = None) -> list[bytes]:
        """The PCM frames received on `track`, in order (in the first `upto` messages)."""
        return [ulaw_decode(base64.b64decode(m["media"]["payload"])) for _, m in self.messages[:upto]
                if m["event"] == "media" and m["media"]["track"] == track]

    async def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 15) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        seen = 0
        while True:
            for _, m in self.messages[seen:]:
                if pred(m):
                    return m
            seen = len(self.messages)
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"not received within {timeout}s; got {self.events()[-20:]}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def send(self, text: str) -> None:
        await self.ws.send(text)


Script = Callable[[Conn], Awaitable[None]]


class StreamApp:
    """`async with StreamApp(script) as app:` listens on a free loopback port; `app.url`."""

    def __init__(self, script: Script | None = None, path: str = "/media"):
        self.script, self.path = script, path
        self.conns: list[Conn] = []
        self.connected = asyncio.Event()

    async def _handle(self, ws: ServerConnection) -> None:
        conn = Conn(ws)
        self.conns.append(conn)
        self.connected.set()

        async def read() -> None:
            try:
                async for raw in ws:
                    m = orjson.loads(raw)
                    conn.messages.append((time.monotonic(), m))
                    if m["event"] == "start":
                        conn.sid, conn.start = m["streamSid"], m["start"]
                    conn.changed.set()
            finally:
                conn.closed.set()
                conn.changed.set()

        reader = asyncio.create_task(read())
        try:
            if self.script is not None:
                await conn.wait_for(lambda m: m["event"] == "start")
                await self.script(conn)
            await reader
        finally:
            reader.cancel()

    async def __aenter__(self) -> "StreamApp":
        self.server = await serve(self._handle, "127.0.0.1", 0, compression=None)
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}{self.path}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.server.close()
        await self.server.wait_closed()
