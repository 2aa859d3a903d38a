"""SIP client transactions over UDP (RFC 3261 17.1) with their retransmission timers.

INVITE (17.1.1): Timer A retransmits from T1, doubling; Timer B gives up after 64*T1
without any response; a non-2xx final is ACKed here (same branch) and Timer D absorbs
its retransmissions. A 2xx ends the transaction and goes to the dialog, which ACKs it.
Non-INVITE (17.1.2): Timer E retransmits from T1, doubling up to T2 (T2 at once after a
provisional); Timer F gives up after 64*T1; Timer K absorbs retransmitted finals.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .message import SipMessage

if TYPE_CHECKING:
    from .transport import SipEndpoint


@dataclass(frozen=True, slots=True)
class Timers:
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


class ClientTransaction:
    """One request and its responses. ``on_response`` gets each provisional and the
    first final response; ``on_timeout`` fires if no final response ever arrives."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        request: SipMessage,
        dest: tuple[str, int],
        on_response: Callable[[SipMessage], None],
        on_timeout: Callable[[], None],
        timers: Timers | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.request = request
        self.dest = dest
        self.method = request.method or ""
        self.branch = request.top_via.branch or ""
        self.key = (self.branch, self.method)
        self.on_response = on_response
        self.on_timeout = on_timeout
        self.timers = timers or endpoint.timers
        self.state = "calling" if self.method == "INVITE" else "trying"
        self.final: SipMessage | None = None
        self._raw = request.encode()
        self._ack: bytes | None = None
        self._interval = self.timers.t1
        self._retransmit_h: asyncio.TimerHandle | None = None
        self._timeout_h: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    @property
    def terminated(self) -> bool:
        return self.state == "terminated"

    def start(self) -> None:
        """Send the request and arm the retransmit (A/E) and timeout (B/F) timers."""
        self.endpoint.register(self)
        self.endpoint.send_raw(self._raw, self.dest)
        self._retransmit_h = self._loop.call_later(self._interval, self._retransmit)
        self._timeout_h = self._loop.call_later(64 * self.timers.t1, self._timed_out)

    def _retransmit(self) -> None:
        if self.state not in ("calling", "trying", "proceeding"):
            return
        if self.method == "INVITE" and self.state == "proceeding":
            return  # a provisional response stops Timer A
        self.endpoint.send_raw(self._raw, self.dest)
        if self.method == "INVITE":
            self._interval *= 2
        else:
            self._interval = min(self._interval * 2, self.timers.t2)
        self._retransmit_h = self._loop.call_later(self._interval, self._retransmit)

    def _timed_out(self) -> None:
        if self.state in ("calling", "trying") or (self.method != "INVITE" and self.state == "proceeding"):
            self._terminate()
            self.on_timeout()

    def receive(self, resp: SipMessage) -> None:
        """A response whose top Via branch and CSeq method match this transaction."""
        code = resp.status or 0
        if self.state == "terminated":
            return
        if self.state == "completed":
            if self._ack is not None:
                self.endpoint.send_raw(self._ack, self.dest)  # the final was retransmitted
            return
        if code < 200:
            if self.state in ("calling", "trying"):
                self.state = "proceeding"
                if self.method == "INVITE":
                    # RFC 3261 17.1.1.2: Timer B only guards the calling state; ringing
                    # can last as long as the TU's own ring timeout.
                    self._cancel_timers(keep_timeout=False)
                else:
                    self._interval = self.timers.t2
            self.on_response(resp)
            return
        self.final = resp
        if self.method == "INVITE" and code < 300:
            self._terminate()  # the dialog ACKs 2xx and absorbs their retransmissions
        elif self.method == "INVITE":
            self._ack = self._build_ack(resp).encode()
            self.endpoint.send_raw(self._ack, self.dest)
            self._enter_completed(32.0)  # Timer D
        else:
            self._enter_completed(self.timers.t4)  # Timer K
        self.on_response(resp)

    def _enter_completed(self, linger: float) -> None:
        self._cancel_timers()
        self.state = "completed"
        self._timeout_h = self._loop.call_later(linger, self._terminate)

    def _build_ack(self, resp: SipMessage) -> SipMessage:
        """ACK for a non-2xx final: same branch and Request-URI, To from the response."""
        req = self.request
        ack = SipMessage(method="ACK", uri=req.uri)
        ack.add("Via", req.get_all("Via")[0])
        for name in ("Route",):
            for value in req.get_all(name):
                ack.add(name, value)
        ack.add("Max-Forwards", "70")
        ack.add("From", req.get("From") or "")
        ack.add("To", resp.get("To") or req.get("To") or "")
        ack.add("Call-ID", req.call_id)
        ack.add("CSeq", f"{req.cseq[0]} ACK")
        return ack

    def _cancel_timers(self, keep_timeout: bool = False) -> None:
        if self._retransmit_h is not None:
            self._retransmit_h.cancel()
            self._retransmit_h = None
        if self._timeout_h is not None and not keep_timeout:
            self._timeout_h.cancel()
            self._timeout_h = None

    def _terminate(self) -> None:
        self._cancel_timers()
        self.state = "terminated"
        self.endpoint.unregister(self)

    def abort(self) -> None:
        """Stop retransmitting and forget the transaction (carrier shutdown)."""
        self._terminate()
