"""The SIP UDP endpoint: one socket per carrier. Requests go to ``on_request``;
responses to the standalone transaction registered for their (branch, method), else to
``on_response`` (a call's responses: its core matches them to its own transactions).

The socket's loop also runs every call's 20 ms media clock, so what a datagram may cost
is bounded before it is parsed: one larger than ``MAX_DATAGRAM`` is dropped unread
(``oversize``), and, with ``peer_filter``, one from an address no live call or
transaction exchanges SIP with is dropped on a set lookup (``foreign``). Anything
unparseable is counted (``garbage``) and dropped; a dispatch that fails is logged, never
raised into the loop."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Callable

import structlog

from .message import MAX_DATAGRAM, SipMessage, SipParseError, parse_message
from .transaction import Timers

if TYPE_CHECKING:
    from .transaction import ClientTransaction

log = structlog.get_logger(__name__)


class SipEndpoint(asyncio.DatagramProtocol):
    """UDP socket for SIP. ``on_request(msg, addr)`` handles incoming requests and
    ``on_response(msg, addr)`` gets the responses no registered standalone transaction
    claims (which is every response of a call)."""

    def __init__(
        self,
        on_request: Callable[[SipMessage, tuple[str, int]], None],
        on_response: Callable[[SipMessage, tuple[str, int]], None],
        timers: Timers | None = None,
        peer_filter: bool = False,
        open_to_invites: bool = False,
    ) -> None:
        self.on_request = on_request
        self.on_response = on_response
        self.timers = timers or Timers()
        self.transport: asyncio.DatagramTransport | None = None
        self._transactions: dict[tuple[str, str], ClientTransaction] = {}
        self.peer_filter = peer_filter
        # Incoming calls on: an INVITE from anywhere is parsed, so that its sender gets its 403
        # (or its call); anything else from an unknown address is still dropped unread.
        self.open_to_invites = open_to_invites
        self._peers: dict[str, int] = {}  # accepted source IPs, reference-counted
        self.garbage = 0
        self.oversize = 0
        self.foreign = 0

    @classmethod
    async def create(cls, host: str, port: int, **kwargs) -> SipEndpoint:
        """Bind the SIP socket (port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_datagram_endpoint(lambda: cls(**kwargs), local_addr=(host, port))
        return proto

    @property
    def local_addr(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        # One socket carries every call's signalling: a dial burst's replies must not
        # overflow the ~200 KB default buffer (a dropped 180 costs an INVITE retransmit).
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            except OSError:
                pass

    def allow_peer(self, ip: str) -> None:
        """Accept datagrams from ``ip`` (until as many release_peer calls)."""
        self._peers[ip] = self._peers.get(ip, 0) + 1

    def release_peer(self, ip: str) -> None:
        n = self._peers.get(ip, 0) - 1
        if n > 0:
            self._peers[ip] = n
        else:
            self._peers.pop(ip, None)

    def accepts(self, ip: str) -> bool:
        return not self.peer_filter or ip in self._peers

    def register(self, tx: ClientTransaction) -> None:
        if tx.key not in self._transactions:
            self.allow_peer(tx.dest[0])
        self._transactions[tx.key] = tx

    def unregister(self, tx: ClientTransaction) -> None:
        if self._transactions.get(tx.key) is tx:
            del self._transactions[tx.key]
            self.release_peer(tx.dest[0])

    def send_raw(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def send(self, msg: SipMessage, addr: tuple[str, int]) -> None:
        """Send a message outside any client transaction (ACK for 2xx, responses)."""
        self.send_raw(msg.encode(), addr)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.dispatch(data, addr)

    def dispatch(self, data: bytes, addr: tuple[str, int]) -> None:
        """One whole SIP message from ``addr`` (a datagram, or one framed off a stream)."""
        if len(data) > MAX_DATAGRAM:
            self.oversize += 1
            self._dropped("oversize", self.oversize, addr, len(data))
            return
        if self.peer_filter and addr[0] not in self._peers and not (
                self.open_to_invites and data.startswith(b"INVITE ")):
            self.foreign += 1
            self._dropped("foreign", self.foreign, addr, len(data))
            return
        if not data.strip(b"\r\n"):
            return  # CRLF keep-alive (RFC 5626)
        try:
            msg = parse_message(data)
        except ValueError as exc:  # SipParseError; anything else would be a parser bug
            self._garbage(addr, len(data), str(exc))
            return
        try:
            if msg.is_request:
                self.on_request(msg, addr)
                return
            via = msg.top_via
            _, method = msg.cseq
            tx = self._transactions.get((via.branch or "", method))
            if tx is not None:
                tx.receive(msg)
            else:
                self.on_response(msg, addr)
        except Exception:  # noqa: BLE001 - one bad message must not stop the endpoint
            log.exception("sip.dispatch_failed", peer=f"{addr[0]}:{addr[1]}", first_line=msg.first_line())

    def _garbage(self, addr: tuple[str, int], size: int, why: str) -> None:
        self.garbage += 1
        # Rate-limit: a flood of junk must not turn into a flood of log lines.
        if self.garbage <= 10 or self.garbage % 1000 == 0:
            log.warning("sip.malformed_datagram", peer=f"{addr[0]}:{addr[1]}", size=size, error=why,
                        total=self.garbage)

    def _dropped(self, why: str, total: int, addr: tuple[str, int], size: int) -> None:
        if total <= 10 or total % 10000 == 0:
            log.warning("sip.datagram_dropped", reason=why, peer=f"{addr[0]}:{addr[1]}", size=size, total=total)

    def error_received(self, exc: Exception) -> None:  # type: ignore[override]
        # ICMP port unreachable and the like: the transaction timers handle the loss.
        log.info("sip.socket_error", error=str(exc))

    def close(self) -> None:
        for tx in list(self._transactions.values()):
            tx.abort()
        if self.transport is not None:
            self.transport.close()
