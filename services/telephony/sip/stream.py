"""SIP over TCP and TLS (RFC 3261 18.3): the stream endpoint beside the UDP one.

One connection per peer address, opened on the first message to it and reused for
everything after (responses to its requests go back on the connection they came in on:
RFC 3261 18.2.2). A listening socket takes the connections peers open to us. Messages
are framed off the byte stream by their Content-Length (mandatory on streams: 18.3); a
header block or body over ``MAX_DATAGRAM`` closes the connection, since a peer that
sends one is not speaking SIP we can bound.

Everything after framing (peer filter, parsing, routing to transactions and calls) is the
UDP endpoint's (``SipEndpoint.dispatch``). A connection that cannot be made, or breaks,
is reported to ``on_transport_error(addr, reason)``: the carrier fails the calls using it
at once instead of letting Timer B run out (17.1.1.2).

TLS verifies the peer's certificate against the trunk's host name (``expect_name``),
with the system's CAs or ``ca_file``. Written here rather than taken from a library:
no maintained asyncio SIP stack exposes its transport layer on its own.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import Callable

import structlog

from .message import MAX_DATAGRAM
from .transport import SipEndpoint

log = structlog.get_logger(__name__)

_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*$", re.IGNORECASE | re.MULTILINE)
MAX_PENDING = 256 * 1024  # bytes queued for a connection still being opened
CONNECT_TIMEOUT_S = 5.0


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client context that verifies the peer's certificate and name (TLS 1.2+)."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tls_server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """Our listener's context: our certificate, TLS 1.2+. A trunk is told apart by its address
    (the inbound trunk directory), not by a client certificate, as with UDP and TCP."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


class Framer:
    """Cuts a SIP byte stream into messages (pure: feed bytes, get whole messages)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The whole messages ``data`` completes; ValueError when the stream is not SIP we can bound."""
        self._buf += data
        out: list[bytes] = []
        while True:
            while self._buf[:2] == b"\r\n":
                del self._buf[:2]  # keep-alive CRLFs between messages (RFC 5626 4.4.1)
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_DATAGRAM:
                    raise ValueError("header block too large")
                return out
            head = bytes(self._buf[:end])
            m = _CONTENT_LENGTH.search(head)
            if m is None:
                raise ValueError("message without Content-Length on a stream")
            size = end + 4 + int(m.group(1))
            if size > MAX_DATAGRAM:
                raise ValueError("message too large")
            if len(self._buf) < size:
                return out
            out.append(bytes(self._buf[:size]))
            del self._buf[:size]


class _Connection(asyncio.Protocol):
    def __init__(self, endpoint: SipStreamEndpoint, addr: tuple[str, int] | None) -> None:
        self.endpoint = endpoint
        self.addr = addr
        self.transport: asyncio.Transport | None = None
        self.framer = Framer()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        if self.addr is None:  # accepted: known by where it comes from
            peer = transport.get_extra_info("peername")
            self.addr = (peer[0], peer[1])
            self.endpoint._conns.setdefault(self.addr, self)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.framer.feed(data)
        except ValueError as exc:
            log.warning("sip.stream_garbage", peer=f"{self.addr[0]}:{self.addr[1]}", error=str(exc))
            assert self.transport is not None
            self.transport.close()
            return
        for msg in messages:
            self.endpoint.dispatch(msg, self.addr)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint._lost(self, exc)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class SipStreamEndpoint(SipEndpoint):
    """SIP over TCP (``ssl_context`` None) or TLS. Same interface as the UDP endpoint:
    ``send_raw(data, addr)`` never blocks (a message to a peer not yet connected waits for
    the connection, bounded by ``MAX_PENDING``)."""

    def __init__(self, *args, transport_name: str = "tcp", ssl_context: ssl.SSLContext | None = None,
                 on_transport_error: Callable[[tuple[str, int], str], None] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.transport_name = transport_name
        self.ssl_context = ssl_context
        self.on_transport_error = on_transport_error
        self._conns: dict[tuple[str, int], _Connection] = {}
        self._pending: dict[tuple[str, int], list[bytes]] = {}
        self._names: dict[tuple[str, int], str] = {}
        self._server: asyncio.Server | None = None
        self._bind: tuple[str, int] = ("0.0.0.0", 0)
        self._tasks: set[asyncio.Task] = set()

    @classmethod
    async def create(cls, host: str, port: int, *, server_ssl: ssl.SSLContext | None = None,
                     listen: bool = True, **kwargs) -> SipStreamEndpoint:  # type: ignore[override]
        """Listen on ``host:port`` (0: a free port) for the connections peers open to us: plain TCP,
        or TLS with ``server_ssl`` (our certificate). ``listen=False`` (TLS without a certificate
        of ours): no listener, so a TLS trunk must reuse the connection we open to it."""
        ep = cls(**kwargs)
        # Not listening, the port we name (Via, Contact) is nominal: the peer answers on the
        # connection we opened. It must still be a port: the transport's default for port 0.
        ep._bind = (host, port or (5061 if ep.ssl_context is not None else 5060))
        if listen:
            loop = asyncio.get_running_loop()
            ep._server = await loop.create_server(lambda: _Connection(ep, None), host, port, ssl=server_ssl)
        return ep

    @property
    def local_addr(self) -> tuple[str, int]:
        if self._server is None:
            return self._bind
        return self._server.sockets[0].getsockname()[:2]

    @property
    def listening(self) -> bool:
        return self._server is not None

    def expect_name(self, addr: tuple[str, int], name: str) -> None:
        """The name a TLS connection to ``addr`` must present a certificate for (the trunk's host)."""
        self._names[addr] = name

    def send_raw(self, data: bytes, addr: tuple[str, int]) -> None:
        conn = self._conns.get(addr)
        if conn is not None and conn.transport is not None:
            conn.write(data)
            return
        queue = self._pending.get(addr)
        if queue is not None:
            if sum(map(len, queue)) + len(data) <= MAX_PENDING:
                queue.append(data)
            return
        self._pending[addr] = [data]
        task = asyncio.get_running_loop().create_task(self._connect(addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        conn = _Connection(self, addr)
        kw = {}
        if self.ssl_context is not None:
            kw = {"ssl": self.ssl_context, "server_hostname": self._names.get(addr, addr[0])}
        try:
            await asyncio.wait_for(loop.create_connection(lambda: conn, addr[0], addr[1], **kw), CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            self._pending.pop(addr, None)
            reason = f"SIP {self.transport_name.upper()} connection to {addr[0]}:{addr[1]} failed: " + (
                str(exc) or type(exc).__name__)
            log.warning("sip.connect_failed", peer=f"{addr[0]}:{addr[1]}", error=str(exc) or type(exc).__name__)
            if self.on_transport_error is not None:
                self.on_transport_error(addr, reason)
            return
        self._conns[addr] = conn
        for data in self._pending.pop(addr, []):
            conn.write(data)

    def _lost(self, conn: _Connection, exc: Exception | None) -> None:
        if conn.addr is not None and self._conns.get(conn.addr) is conn:
            del self._conns[conn.addr]
            if exc is not None and self.on_transport_error is not None:
                self.on_transport_error(conn.addr, f"SIP {self.transport_name.upper()} connection to "
                                                   f"{conn.addr[0]}:{conn.addr[1]} broke: {exc}")

    def close(self) -> None:
        for tx in list(self._transactions.values()):
            tx.abort()
        for conn in list(self._conns.values()):
            if conn.transport is not None:
                conn.transport.close()
        self._conns.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
