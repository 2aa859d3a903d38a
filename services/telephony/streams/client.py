"""One call's media stream: the WebSocket edge of the Twilio Media Streams protocol.

The gateway (services/telephony/gateway.py ``LiveCall``) owns one ``MediaStream`` per
stream a call opens. It hands it the callee's frames (``on_inbound``, from the carrier's
frame callback, synchronously), our frames (``on_outbound``) and the callee's keys
(``on_dtmf``); the stream reports ``stream.started`` / ``stream.stopped`` /
``stream.failed`` through the ``report`` callback the gateway gives it.

A stream never blocks the call:

- connecting (the URL checked again, its host resolved under the SSRF rules, the
  socket opened to the vetted address) is bounded by ``CONNECT_TIMEOUT_S``; a failure
  is ``stream.failed`` and the call goes on;
- frames to the app wait in a bounded queue (``SEND_BUFFER`` messages, ~5 s of one
  track); when the app reads too slowly the *oldest* are shed, counted and logged, and
  a send stuck for ``SEND_STALL_S`` fails the stream;
- the app's audio waits in the bounded ``Playout`` queue; the carrier takes it a frame at a
  time on its own 20 ms clock (the session's feed, ``pull``), so no task or timer runs per
  frame; a prompt or digits the call sends have the line first (the app's audio waits, and
  goes on where it was once they are out).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import structlog
import websockets
import websockets.protocol
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.common import metrics
from services.common.ssrf import SsrfError, check_ws_url, resolve_checked
from services.telephony.streams import protocol
from services.telephony.streams.playout import Playout

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 2.0  # the stop message and the close handshake, at the call's end
SEND_BUFFER = 250  # media messages waiting for the app (5 s of one track)
SEND_STALL_S = 10.0  # one send blocked this long: the app is gone without closing
PLAYOUT_FRAMES = 1500  # 30 s of the app's audio may wait to be played
NORMAL_CLOSES = {1000, 1001}
KERNEL_SEND_BUFFER = 32 * 1024  # ~2 s of one track's media messages (Linux doubles it)
WRITE_NOW_MAX_BUFFER = 16 * 1024  # bytes the transport still holds unsent: past this, frames queue

Report = Callable[[str, dict[str, Any]], Awaitable[None]]


def public_url(url: str) -> str:
    """The URL as the timeline shows it: no query or fragment (they often carry tokens)."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.netloc}{p.path}"


class MediaStream:
    def __init__(self, *, sid: str, call_id: str, account_id: str, options: dict[str, Any], session: Any,
                 report: Report, step: str | None = None,
                 set_feed: Callable[[Callable[[], bytes | None] | None], None] | None = None):
        self.sid, self.options, self.session, self.step = sid, options, session, step
        self.url = options["url"]
        self.tracks = protocol.TRACKS[options.get("track") or "inbound"]
        self.bidirectional = bool(options.get("bidirectional", False))
        self.parameters = {str(k): str(v) for k, v in (options.get("parameters") or {}).items()}
        self._report = report
        # How the app's audio reaches the call: the session's feed, or the call's own setter
        # (the gateway's, which keeps a bridge or hold music in front of it while they last).
        self._set_feed = set_feed if set_feed is not None else getattr(session, "set_feed", None)
        self.out = protocol.Outgoing(sid, call_id, account_id)
        self.playout = Playout(max_frames=PLAYOUT_FRAMES)
        # To the app, in order: (is media, message). Media is bounded (the oldest is shed);
        # dtmf and mark echoes never are. One queue, so an echo never overtakes its audio.
        self._queue: deque[tuple[bool, bytes]] = deque()
        self._queued_media = 0
        self._sending_since: float | None = None  # when the send in progress started (the watchdog's)
        self._wake = asyncio.Event()
        self._ws: Any = None
        self._open = False  # `start` sent: frames go to the app from now on
        self._finished = False  # the final event is reported (once)
        self._feeding = False  # our `pull` is the call's feed
        self._ts = {"inbound": 0, "outbound": 0}
        self.sent = self.received = self.dropped = 0
        self.invalid = 0
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    # --- from the call (synchronous, on the carrier's clock) ------------------------------

    def on_inbound(self, frame: bytes) -> None:
        self._frame("inbound", frame)

    def on_outbound(self, frame: bytes) -> None:
        self._frame("outbound", frame)

    def _frame(self, track: str, frame: bytes) -> None:
        if not self._open or track not in self.tracks:
            return
        ts = self._ts[track]
        self._ts[track] = ts + 20
        if self._queued_media >= SEND_BUFFER:
            self._shed_oldest()  # the app reads too slowly: the oldest frame goes
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 500 == 0:
                log.warning("media stream: app too slow, oldest frames shed", stream_sid=self.sid,
                            dropped=self.dropped)
        msg = self.out.media(track, frame, ts)
        if not self._queue and self._write_now(msg):
            self.sent += 1
            return
        self._queue.append((True, msg))
        self._queued_media += 1
        self._wake.set()

    def _write_now(self, msg: bytes) -> bool:
        """Write a frame to the socket at once, on the carrier's tick, when nothing waits before it
        and the socket keeps up; else it goes through the writer task (which awaits the drain).

        Why: a task woken per frame per stream is most of a stream's cost at 100 streams, and
        it makes the frame leave a few loop iterations after its tick. ``protocol`` is the
        connection's sans-I/O state machine and ``send_data`` flushes it to the transport:
        the same two steps ``Connection.send`` takes, without the await.
        """
        ws = self._ws
        if (ws is None or self._sending_since is not None or ws.send_in_progress is not None
                or ws.protocol.state is not websockets.protocol.State.OPEN
                or ws.transport.get_write_buffer_size() > WRITE_NOW_MAX_BUFFER):
            return False
        ws.protocol.send_text(msg)
        ws.send_data()
        return True

    def _shed_oldest(self) -> None:
        for i, (media, _) in enumerate(self._queue):  # control messages are rare: found at once
            if media:
                del self._queue[i]
                self._queued_media -= 1
                return

    def _control(self, msg: bytes) -> None:
        self._queue.append((False, msg))
        self._wake.set()

    def on_dtmf(self, digit: str) -> None:
        if self._open:
            self._control(self.out.dtmf(digit))

    # --- lifecycle -----------------------------------------------------------------------

    async def close(self, reason: str) -> None:
        """Stop the stream from our side (the call ended, a new stream replaced it): the app
        gets ``stop``, the timeline ``stream.stopped``. Bounded by CLOSE_TIMEOUT_S."""
        if self._finished:
            return
        ws, was_open = self._ws, self._open
        self._open = False
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        if ws is not None:
            try:
                await asyncio.wait_for(self._goodbye(ws, was_open), CLOSE_TIMEOUT_S)
            except Exception:  # the app is slow or gone: the call does not wait for it
                ws.transport.abort()
        self._detach()
        await self._finish("stream.stopped", reason if was_open else f"{reason} before the stream connected")

    async def _goodbye(self, ws: Any, was_open: bool) -> None:
        if was_open:
            await ws.send(self.out.stop(), text=True)
        await _close(ws)

    async def _finish(self, type: str, reason: str) -> None:
        if self._finished:
            return
        self._finished = True
        self._open = False
        for direction, n in (("sent", self.sent), ("received", self.received), ("dropped", self.dropped)):
            metrics.STREAM_FRAMES.labels(direction).inc(n)
        await self._report(type, {**self._ids(), "reason": reason, "frames_sent": self.sent,
                                  "frames_received": self.received, "frames_dropped": self.dropped,
                                  "frames_shed": self.playout.shed})

    def _ids(self) -> dict[str, Any]:
        d = {"stream_sid": self.sid, "url": public_url(self.url), "track": self.options.get("track") or "inbound",
             "bidirectional": self.bidirectional}
        if self.step is not None:
            d["step"] = self.step
        return d

    async def _run(self) -> None:
        try:
            ws = await asyncio.wait_for(self._connect(), CONNECT_TIMEOUT_S)
        except asyncio.TimeoutError:
            return await self._finish("stream.failed", f"connect timed out after {CONNECT_TIMEOUT_S:g} s")
        except SsrfError as exc:
            return await self._finish("stream.failed", f"URL refused: {exc}")
        except Exception as exc:  # refused, TLS, HTTP status instead of an upgrade, ...
            return await self._finish("stream.failed", f"connect failed: {_describe(exc)}")
        self._ws = ws
        _bound_kernel_buffer(ws)
        try:
            await ws.send(self.out.connected(), text=True)
            await ws.send(self.out.start(self.tracks, self.parameters), text=True)
        except Exception as exc:
            return await self._finish("stream.failed", f"closed during start: {_describe(exc)}")
        self._open = True
        await self._report("stream.started", {**self._ids(), "parameters": self.parameters})
        tasks = [asyncio.create_task(self._writer(ws)), asyncio.create_task(self._reader(ws)),
                 asyncio.create_task(self._watchdog())]
        if self.bidirectional and self._set_feed is not None:
            self._set_feed(self.pull)
            self._feeding = True
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            outcome = next(iter(done)).result()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome = ("stream.failed", _describe(exc))
        finally:
            for t in tasks:
                t.cancel()
        self._detach()
        await self._finish(*outcome)  # the timeline first: closing a stuck socket can take its time
        await _close(ws)

    async def _connect(self) -> Any:
        host, port = check_ws_url(self.url)
        addrs = await resolve_checked(host, port)
        # To the vetted address (never re-resolved); TLS and Host still use the URL's name.
        # No proxy from the environment: it would do the resolving for us.
        return await connect(self.url, host=addrs[0], port=port, open_timeout=None, close_timeout=CLOSE_TIMEOUT_S, proxy=None,
                             compression=None,
                             max_size=protocol.MAX_MESSAGE_BYTES, max_queue=64,
                             user_agent_header="CanaryVoice-MediaStreams/1.0")

    async def _writer(self, ws: Any) -> tuple[str, str]:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            media, msg = self._queue.popleft()
            if media:
                self._queued_media -= 1
            # No timeout per send (a timer or a task for each of 50 messages a second is most
            # of the edge's cost): the watchdog below fails a send that stays blocked.
            self._sending_since = asyncio.get_running_loop().time()
            try:
                await ws.send(msg, text=True)
            except ConnectionClosed as exc:
                return _closed(exc.rcvd)
            self._sending_since = None
            if media:
                self.sent += 1

    async def _watchdog(self) -> tuple[str, str]:
        """A send blocked for SEND_STALL_S: the app stopped reading without closing."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            since = self._sending_since
            if since is not None and loop.time() - since >= SEND_STALL_S:
                return "stream.failed", f"app stopped reading for {SEND_STALL_S:g} s"

    async def _reader(self, ws: Any) -> tuple[str, str]:
        try:
            async for raw in ws:
                self._on_message(protocol.parse(raw, self.sid, audio=self.bidirectional))
        except ConnectionClosed as exc:
            return _closed(exc.rcvd)
        return _closed(ws.protocol.close_rcvd)  # a normal close ends the iteration without raising

    def _on_message(self, msg: protocol.AppMessage) -> None:
        if isinstance(msg, protocol.Media):
            if self.bidirectional:  # a one-way stream's app has no say in the call (as with Twilio)
                self.received += 1
                self.playout.add_audio(msg.pcm)
        elif isinstance(msg, protocol.Mark):
            if self.bidirectional:
                self.playout.add_mark(msg.name)
        elif isinstance(msg, protocol.Clear):
            self._echo(self.playout.clear())  # the next tick sends silence: nothing was handed on
        else:
            self.invalid += 1
            if self.invalid == 1 or self.invalid % 100 == 0:
                log.info("media stream: message ignored", stream_sid=self.sid, reason=msg.reason, count=self.invalid)

    def _echo(self, marks: list[str]) -> None:
        for name in marks:
            self._control(self.out.mark(name))

    def pull(self) -> bytes | None:
        """The frame the call sends next, asked by the carrier on its 20 ms clock whenever no
        prompt or digit has the line: the app's next frame (None: nothing queued, silence).
        A mark reached on the way is echoed now: the audio before it has gone out."""
        while True:
            item = self.playout.take_frame()
            if type(item) is not str:
                return item
            self._echo([item])

    def _detach(self) -> None:
        if self._feeding:
            self._feeding = False
            self._set_feed(None)


def _bound_kernel_buffer(ws: Any) -> None:
    """Keep the kernel from holding more than a few seconds of frames for a slow app: past
    that they wait in our bounded queue, where the oldest are shed (a late frame is useless
    to a bot), instead of arriving tens of seconds late from a socket buffer of megabytes."""
    sock = ws.transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)
        except OSError:  # not a TCP socket (a test's pipe): nothing to bound
            pass


async def _close(ws: Any) -> None:
    """The close handshake, bounded; a peer that does not answer loses the connection."""
    try:
        await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT_S)
    except Exception:
        ws.transport.abort()


def _closed(rcvd: Any) -> tuple[str, str]:
    """How the app's side ended (its close frame, if any): a normal close is ``stream.stopped``,
    anything else ``stream.failed``."""
    if rcvd is not None and rcvd.code in NORMAL_CLOSES:
        return "stream.stopped", "app closed the stream" + (f": {rcvd.reason}" if rcvd.reason else "")
    if rcvd is None:
        return "stream.failed", "connection lost without a close frame"
    return "stream.failed", f"app closed the stream with code {rcvd.code}" + (f": {rcvd.reason}" if rcvd.reason
                                                                               else "")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        return f"HTTP {exc.response.status_code} instead of a WebSocket upgrade"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
