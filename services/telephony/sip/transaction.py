"""SIP client transactions (RFC 3261 17.1) with their retransmission timers.

INVITE (17.1.1): Timer A retransmits from T1, doubling; Timer B gives up after 64*T1
without any response; a non-2xx final is ACKed here (same branch) and Timer D absorbs
its retransmissions. A 2xx ends the transaction and goes to the dialog, which ACKs it.
Non-INVITE (17.1.2): Timer E retransmits from T1, doubling up to T2 (T2 at once after a
provisional); Timer F gives up after 64*T1; Timer K absorbs retransmitted finals.
Over a reliable transport (TCP, TLS) nothing is retransmitted and nothing lingers: Timers
A and E are never armed, D and K are zero; B and F still give up on a silent peer.

:class:`ClientTx` is that state machine with no I/O: it takes responses and timer
ticks and returns what to do (:class:`Send`, :class:`ArmTimer`, :class:`CancelTimer`).
The call core (``core.py``) owns one per request it sends. :class:`ClientTransaction`
is the asyncio shell of a standalone ``ClientTx`` (a request outside any call).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NamedTuple

from .message import SipMessage, build_request

if TYPE_CHECKING:
    from .transport import SipEndpoint


@dataclass(frozen=True, slots=True)
class Timers:
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    failover_s: float = 4.0  # a UDP server silent this long (no 100 Trying) is passed over when another is left


TIMER_D = 32.0  # RFC 3261 17.1.1.2: at least 32 s over UDP


class TimerId(NamedTuple):
    """A timer's name (RFC letter, or a call timer's name) and, for a transaction's
    timer, the transaction it belongs to (branch, method)."""

    name: str
    branch: str = ""
    method: str = ""


# What a state machine asks its shell to do.
@dataclass(frozen=True, slots=True)
class Send:
    msg: SipMessage
    addr: tuple[str, int]


@dataclass(frozen=True, slots=True)
class ArmTimer:
    """Call ``on_timer(id, now)`` at time ``at`` (replaces a timer of the same id)."""

    id: TimerId
    at: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    id: TimerId


Action = Send | ArmTimer | CancelTimer


class ClientTx:
    """One request and its responses, without I/O.

    ``receive()`` and ``fire()`` return ``(actions, report)``: ``receive`` reports True
    for each provisional and for the first final response (the ones the owner must
    see); ``fire`` reports True when the transaction timed out (Timer B/F).
    """

    def __init__(self, request: SipMessage, dest: tuple[str, int], timers: Timers, *, reliable: bool = False) -> None:
        self.request = request
        self.reliable = reliable
        self.dest = dest
        self.timers = timers
        self.method = request.method or ""
        self.branch = request.top_via.branch or ""
        self.key = (self.branch, self.method)
        self.invite = self.method == "INVITE"
        self.state = "calling" if self.invite else "trying"
        self.final: SipMessage | None = None
        self._ack: SipMessage | None = None
        self._interval = timers.t1
        self._armed: set[str] = set()
        self._retransmit, self._timeout, self._linger = ("A", "B", "D") if self.invite else ("E", "F", "K")

    @property
    def terminated(self) -> bool:
        return self.state == "terminated"

    def timer_id(self, name: str) -> TimerId:
        return TimerId(name, self.branch, self.method)

    def start(self, now: float) -> list[Action]:
        """Send the request and arm the retransmit (A/E) and timeout (B/F) timers."""
        out: list[Action] = [Send(self.request, self.dest)]
        if not self.reliable:
            self._arm(out, self._retransmit, now + self._interval)
        self._arm(out, self._timeout, now + 64 * self.timers.t1)
        return out

    def receive(self, resp: SipMessage, now: float) -> tuple[list[Action], bool]:
        """A response whose top Via branch and CSeq method match this transaction."""
        out: list[Action] = []
        code = resp.status or 0
        if self.state == "terminated":
            return out, False
        if self.state == "completed":
            if self._ack is not None:
                out.append(Send(self._ack, self.dest))  # the final was retransmitted
            return out, False
        if code < 200:
            if self.state in ("calling", "trying"):
                self.state = "proceeding"
                if self.invite:
                    # RFC 3261 17.1.1.2: Timer B only guards the calling state; ringing
                    # can last as long as the TU's own ring timeout.
                    self._disarm(out, self._retransmit, self._timeout)
                else:
                    self._interval = self.timers.t2
            return out, True
        self.final = resp
        if self.invite and code < 300:
            self._terminate(out)  # the dialog ACKs 2xx and absorbs their retransmissions
        elif self.invite:
            self._ack = self._build_ack(resp)
            out.append(Send(self._ack, self.dest))
            self._complete(out, now + (0 if self.reliable else TIMER_D))
        else:
            self._complete(out, now + (0 if self.reliable else self.timers.t4))  # Timer K
        return out, True

    def fire(self, name: str, now: float) -> tuple[list[Action], bool]:
        """Timer ``name`` (one this transaction armed) is due."""
        out: list[Action] = []
        if name not in self._armed:
            return out, False
        self._armed.discard(name)
        if name == self._retransmit:
            if self.state in ("calling", "trying", "proceeding") and not (self.invite and self.state == "proceeding"):
                out.append(Send(self.request, self.dest))
                if self.invite:
                    self._interval *= 2
                else:
                    self._interval = min(self._interval * 2, self.timers.t2)
                self._arm(out, self._retransmit, now + self._interval)
        elif name == self._timeout:
            if self.state in ("calling", "trying") or (not self.invite and self.state == "proceeding"):
                self._terminate(out)
                return out, True
        elif name == self._linger:
            self._terminate(out)
        return out, False

    def abort(self) -> list[Action]:
        """Stop retransmitting and forget the transaction (carrier shutdown, CANCEL give-up)."""
        out: list[Action] = []
        self._terminate(out)
        return out

    def _build_ack(self, resp: SipMessage) -> SipMessage:
        """ACK for a non-2xx final (17.1.1.3): same branch, Request-URI and Route, To from the response."""
        req = self.request
        return build_request(
            "ACK", req.uri or "", via=req.get_all("Via")[0], from_=req.get("From") or "",
            to=resp.get("To") or req.get("To") or "", call_id=req.call_id, cseq=req.cseq[0],
            routes=req.get_all("Route"),
        )

    def _complete(self, out: list[Action], linger_until: float) -> None:
        self._disarm(out, *tuple(self._armed))
        self.state = "completed"
        self._arm(out, self._linger, linger_until)

    def _terminate(self, out: list[Action]) -> None:
        self._disarm(out, *tuple(self._armed))
        self.state = "terminated"

    def _arm(self, out: list[Action], name: str, at: float) -> None:
        self._armed.add(name)
        out.append(ArmTimer(self.timer_id(name), at))

    def _disarm(self, out: list[Action], *names: str) -> None:
        for name in names:
            if name in self._armed:
                self._armed.discard(name)
                out.append(CancelTimer(self.timer_id(name)))


class ClientTransaction:
    """The asyncio shell of one standalone :class:`ClientTx`: sends through the endpoint,
    arms loop timers, and gets the responses the endpoint routes to it by (branch,
    method). ``on_response`` gets each provisional and the first final response;
    ``on_timeout`` fires if no final response ever arrives."""

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
        self.tx = ClientTx(request, dest, timers or endpoint.timers)
        self.request, self.dest = request, dest
        self.method, self.branch, self.key = self.tx.method, self.tx.branch, self.tx.key
        self.on_response = on_response
        self.on_timeout = on_timeout
        self._handles: dict[TimerId, asyncio.TimerHandle] = {}
        self._loop = asyncio.get_running_loop()

    @property
    def state(self) -> str:
        return self.tx.state

    @property
    def terminated(self) -> bool:
        return self.tx.terminated

    @property
    def final(self) -> SipMessage | None:
        return self.tx.final

    def start(self) -> None:
        self.endpoint.register(self)
        self._apply(self.tx.start(self._loop.time()))

    def receive(self, resp: SipMessage) -> None:
        actions, report = self.tx.receive(resp, self._loop.time())
        self._apply(actions)
        if report:
            self.on_response(resp)

    def abort(self) -> None:
        self._apply(self.tx.abort())

    def _fire(self, tid: TimerId) -> None:
        self._handles.pop(tid, None)
        actions, timed_out = self.tx.fire(tid.name, self._loop.time())
        self._apply(actions)
        if timed_out:
            self.on_timeout()

    def _apply(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Send):
                self.endpoint.send_raw(a.msg.encode(), a.addr)
            elif isinstance(a, ArmTimer):
                old = self._handles.pop(a.id, None)
                if old is not None:
                    old.cancel()
                self._handles[a.id] = self._loop.call_at(a.at, self._fire, a.id)
            elif isinstance(a, CancelTimer):
                h = self._handles.pop(a.id, None)
                if h is not None:
                    h.cancel()
        if self.tx.terminated:
            self.endpoint.unregister(self)
