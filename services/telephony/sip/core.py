"""The UAC side of one SIP call as a pure state machine: dialog + client transactions.

No sockets, no event loop, no clock. Inputs are the messages that arrive, timer ticks
and the user's actions, each with the time ``now``; every input returns the outputs, in
order, for the shell (``call.py``) to carry out:

* :class:`Send` a message to an address; :class:`ArmTimer` / :class:`CancelTimer`;
* media: :class:`SetRemoteMedia` (the negotiated far end from an SDP answer),
  :class:`StartMedia`, :class:`CloseMedia`;
* the carrier events :class:`Ringing`, :class:`Answered`, :class:`DtmfReceived` and
  exactly one :class:`Ended`;
* :class:`Finished` once the call has ended and its last transaction is gone (until
  then responses must still reach it: a late 200 OK is ACKed and BYEd, a retransmitted
  final is ACKed again).

States: ``init`` -> ``calling`` -> ``early`` (a 180/183: early dialog) -> ``confirmed``
(2xx, ACKed) -> ``terminated``; ``terminated`` also straight from init/calling/early
(busy, failure, CANCEL, Timer B). Requests go out through one builder
(:func:`build_request`) and one transaction path (:meth:`CallCore._start_tx`).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable

import structlog

from services.telephony.carrier import (
    Answered,
    DialRequest,
    DtmfReceived,
    Ended,
    Ringing,
    TransferProgress,
    TrunkConfig,
)

from .digest import DigestError, authorization, parse_challenge
from .locate import DEFAULT_PORTS, Target
from .mapping import map_final_response
from .message import (
    SipMessage,
    SipParseError,
    build_request,
    make_response,
    new_branch,
    new_tag,
    parse_name_addr,
    parse_uint,
    uri_hostport,
)
from .policy import STRICT, TrunkPolicy, is_ip
from .sdp import SdpError, build_offer, parse_sdp
from .srtp import Crypto, CryptoError, SrtpKeys, keys_of_answer, keys_of_offer, our_offer
from .transaction import ArmTimer, CancelTimer, ClientTx, Send, TimerId, Timers

log = structlog.get_logger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY"
SESSION_EXPIRES_S = 1800  # RFC 4028's recommended session interval
MIN_SE_S = 90  # and the smallest we accept

# The call's own timers (the transactions' are TimerId(letter, branch, method)).
RING_TIMEOUT = TimerId("ring")  # the caller's timeout_s: CANCEL, status no-answer
CANCEL_GUARD = TimerId("cancel_guard")  # 8*T1 after CANCEL: report without waiting for the 487
ABANDON_INVITE = TimerId("abandon_invite")  # 64*T1 after CANCEL: forget the INVITE transaction
SESSION_REFRESH = TimerId("session_refresh")  # we are the refresher (RFC 4028): UPDATE at half the interval
SESSION_EXPIRY = TimerId("session_expiry")  # the far end refreshes: BYE if it has not before the session expires
FAILOVER = TimerId("failover")  # a silent UDP target with others behind it: try the next (RFC 3263 4.3)


@dataclass(frozen=True, slots=True)
class SetRemoteMedia:
    """The far end negotiated by an SDP answer (or a re-INVITE): where and how to send RTP."""

    ip: str
    port: int
    codec_pt: int
    codec_name: str
    dtmf_pt: int | None
    srtp: SrtpKeys | None = None  # None: plain RTP


@dataclass(frozen=True, slots=True)
class StartMedia:
    """``send=False``: listen only (early media); ``send=True``: answered, send RTP too."""

    send: bool


@dataclass(frozen=True, slots=True)
class CloseMedia:
    pass


@dataclass(frozen=True, slots=True)
class Finished:
    """Ended, and no transaction left: the call need not receive messages any more."""


Output = Send | ArmTimer | CancelTimer | SetRemoteMedia | StartMedia | CloseMedia | Ringing | Answered | \
    DtmfReceived | TransferProgress | Ended | Finished

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_SIPFRAG = re.compile(r"SIP/2\.0 ([1-6][0-9]{2})(?: (.*))?")


def refer_target(target: str) -> str:
    """The Refer-To URI of a transfer: a ``tel:``, ``sip:`` or ``sips:`` URI exactly as given, an
    E.164 number as ``tel:+E164``; ValueError for anything else (or a URI that would break the
    header: ``<``, ``>``, whitespace or control characters)."""
    target = target.strip()
    if _E164.fullmatch(target):
        return f"tel:{target}"
    scheme = target.split(":", 1)[0].lower()
    if scheme not in ("tel", "sip", "sips") or len(target) <= len(scheme) + 1:
        raise ValueError(f"transfer target {target!r}: not an E.164 number or a tel:/sip: URI")
    if any(ch in "<>\"" or ord(ch) <= 32 or ord(ch) == 127 for ch in target):
        raise ValueError(f"transfer target {target!r}: not a valid URI")
    return target


def parse_sipfrag(body: bytes) -> tuple[int, str] | None:
    """The status line of a ``message/sipfrag`` body (RFC 3420): ``SIP/2.0 180 Ringing`` ->
    (180, "Ringing"); None if it is not one."""
    first = body.decode("utf-8", "replace").lstrip("\r\n").split("\n", 1)[0].rstrip("\r").strip()
    m = _SIPFRAG.fullmatch(first)
    return (int(m.group(1)), (m.group(2) or "").strip()) if m else None


@dataclass(slots=True)
class _Refer:
    """The blind transfer in progress: our REFER and the implicit subscription it created."""

    target: str  # the Refer-To URI
    cseq: int  # the REFER's CSeq: the subscription's id (RFC 3515 2.4.6)
    accepted: bool = False


STREAM_TRANSPORTS = ("tcp", "tls")  # reliable: no retransmissions (RFC 3261 17.1)


def parse_session_expires(value: str) -> tuple[int, str | None] | None:
    """``1800;refresher=uac`` -> (1800, "uac"): the interval (at least 1 s) and the refresher if
    named; None when the value is not a number of seconds."""
    head, *params = [p.strip() for p in value.split(";")]
    try:
        interval = parse_uint(head, 7, "Session-Expires")
    except ValueError:
        return None
    refresher = None
    for p in params:
        k, _, v = p.partition("=")
        if k.strip().lower() == "refresher" and v.strip().lower() in ("uac", "uas"):
            refresher = v.strip().lower()
    return max(interval, 1), refresher


def sip_uri(number: str, host: str, port: int | None, transport: str = "udp") -> str:
    """``+15551234567`` -> ``sip:+15551234567@host:port``; full SIP URIs pass through. Over
    TCP or TLS the URI says so (``;transport=tcp``), so every hop keeps the transport. No
    port (a trunk located by DNS): none in the URI, so the next hop locates it the same way."""
    if number.startswith(("sip:", "sips:")):
        return number
    user = "".join(ch for ch in number if ch.isalnum() or ch in "+*#-._")
    hostport = host if port in (None, DEFAULT_PORTS.get(transport, 5060)) else f"{host}:{port}"
    return f"sip:{user}@{hostport}" + (f";transport={transport}" if transport != "udp" else "")


@dataclass(slots=True)
class _Pending:
    """A live client transaction and what the call does with what it reports."""

    tx: ClientTx
    on_response: Callable[[SipMessage, float], None] | None = None
    on_timeout: Callable[[float], None] | None = None


@dataclass(slots=True)
class _Auth:
    tries: dict[str, int] = field(default_factory=dict)  # by method
    nc: int = 0


class CallCore:
    """One outbound call leg: INVITE (with digest retry), CANCEL, BYE both ways, ACK,
    in-dialog OPTIONS/INFO/re-INVITE. Pure: see the module docstring."""

    def __init__(
        self,
        request: DialRequest,
        trunk: TrunkConfig,
        *,
        local_ip: str,
        sip_port: int,
        media_port: int,
        timers: Timers | None = None,
        user_agent: str = "canary-voice",
        sdp_session_id: int | None = None,
        policy: TrunkPolicy | None = None,
        session_expires_s: int = SESSION_EXPIRES_S,
        min_se_s: int = MIN_SE_S,
    ) -> None:
        self.call_id = request.call_id
        self.session_expires_s, self.min_se_s = session_expires_s, min_se_s
        self.session: tuple[int, str] | None = None  # (interval s, refresher "uac"|"uas") once agreed
        self._now = 0.0  # the time of the message being handled (for timers armed by requests)
        self.request = request
        self.trunk = trunk
        self.policy = policy or STRICT
        self.timers = timers or Timers()
        self.user_agent = user_agent
        self.local_ip = local_ip
        self.media_port = media_port
        self.transport = (trunk.transport or "udp").lower()
        # Where the INVITE goes, in order: the next is tried when one fails at the transport
        # level, times out or answers 503 (RFC 3263 4.3); ``tried`` says how each went.
        self._targets = list(trunk.targets) or [Target(
            trunk.address or trunk.host, trunk.port or DEFAULT_PORTS.get(self.transport, 5060), trunk.host)]
        self.target = self._targets.pop(0)
        self.tried: list[str] = []
        self.dest = (self.target.address, self.target.port)
        # The trunk's addresses: its vetted IPs and the names it was configured and located
        # with. The route set and the remote target must stay on them (unless the policy
        # allows otherwise), and only a response from the vetted IP may pin the digest realm.
        self._trunk_hosts = {h.lower() for h in (trunk.address, trunk.host) if h} | {
            h.lower() for t in (self.target, *self._targets) for h in (t.address, t.name)}
        self._foreign_peers: set[str] = set()  # allowed hops off the trunk (policy.allow_foreign_hops)
        self._realm: str | None = self.policy.realm  # the realm challenges must name, once known
        self._auth_refused: str | None = None  # why the last challenge was not answered
        self._resp_from: tuple[str, int] | None = None  # where the response being handled came from
        self.sip_call_id = f"{os.urandom(12).hex()}@{local_ip}"
        self.local_tag = new_tag()
        self.remote_tag: str | None = None
        self.remote_target: str | None = None
        self.route_set: list[str] = []
        self.cseq = 0
        self.state = "init"
        self.ended: Ended | None = None
        self.finished = False
        self.reliable = self.transport in STREAM_TRANSPORTS
        self.request_uri = sip_uri(request.to, trunk.host, trunk.port, self.transport)
        caller = trunk.caller_id or request.from_
        self.from_hdr = f"<{sip_uri(caller, trunk.host, trunk.port)}>;tag={self.local_tag}"
        self.to_hdr = f"<{self.request_uri}>"
        self.contact = f"<sip:canary@{local_ip}:{sip_port}" + (
            f";transport={self.transport}>" if self.reliable else ">")
        self._via_host = f"{local_ip}:{sip_port}"
        # What the media was last told (MediaSession's defaults until an answer).
        self.codec_pt = 0
        self.dtmf_pt: int | None = None
        # SRTP (RFC 4568): the trunk's mode, the crypto lines we offer (required only: an
        # "optional" trunk offers plain RTP/AVP, see docs/architecture.md) and the keys in use.
        self.srtp_mode = (trunk.srtp or "off").lower()
        self._offered: tuple[Crypto, ...] = our_offer() if self.srtp_mode == "required" else ()
        self.srtp_keys: SrtpKeys | None = None
        self._answer_refused: str | None = None  # why the last SDP answer was not taken
        self._txs: dict[tuple[str, str], _Pending] = {}
        self._invite: SipMessage | None = None  # the INVITE now in progress (after an auth retry: the retry)
        self._got_provisional = False
        self._rseq: int | None = None  # RSeq of the last reliable provisional we PRACKed (RFC 3262)
        self._rang = False
        self._cancel_reason: str | None = None  # "timeout" | "hangup"
        self._cancel_sent = False
        self._ack: SipMessage | None = None
        self._armed: set[TimerId] = set()
        self._auth = _Auth()
        self._sdp_session_id = int(time.time()) if sdp_session_id is None else sdp_session_id
        self._sdp_version = 1
        self._out: list[Output] = []
        self._refer: _Refer | None = None  # the blind transfer in progress (REFER, RFC 3515)

    # --- inputs ----------------------------------------------------------------------
    def invite(self, now: float) -> list[Output]:
        """Send the INVITE and arm the ring timeout."""
        if self.state != "init" or self.ended is not None:
            return []
        if self.transport not in ("udp", *STREAM_TRANSPORTS):
            self._end(Ended("failed", f"unsupported SIP transport {self.trunk.transport}", None, "system"))
            return self._flush()
        self.state = "calling"
        self._send_invite(self._build_invite(), now)
        self._arm(RING_TIMEOUT, now + self.request.timeout_s)
        log.info("sip.invite", call_id=self.call_id, sip_call_id=self.sip_call_id, to=self.request_uri)
        return self._flush()

    def hangup(self, now: float) -> list[Output]:
        """End the call from our side: BYE after answer, CANCEL before (status canceled)."""
        if self.ended is None:
            if self.state == "confirmed":
                self._send_bye(now)
                self._end(Ended("completed", "hung up by caller", None, "caller"))
            elif self.state in ("calling", "early"):
                self._cancel_call("hangup", now)
            elif self.state == "init":
                self._end(Ended("canceled", "canceled before answer", None, "caller"))
        return self._flush()

    def cancel(self, now: float) -> list[Output]:
        """CANCEL the INVITE (the caller gave up before the answer); no-op otherwise."""
        if self.ended is None and self.state in ("calling", "early"):
            self._cancel_call("hangup", now)
        return self._flush()

    def refer(self, target: str, now: float) -> list[Output]:
        """Blind transfer (RFC 3515): an in-dialog REFER sending the far end to ``target`` (see
        :func:`refer_target`). Its outcome comes as :class:`TransferProgress` events: the REFER
        refused ends the transfer (the call stays up); accepted, each NOTIFY's sipfrag is
        reported until a final one; a 2xx final means the far end is connected to the target, and
        we BYE (the call ends ``completed``). ValueError for a bad target; [] (nothing sent) if
        the call is not answered or a transfer is already in progress."""
        uri = refer_target(target)
        if self.ended is not None or self.state != "confirmed" or self._refer is not None:
            return []
        req = self._request("REFER", in_dialog=True)
        req.add("Refer-To", f"<{uri}>")
        req.add("Referred-By", f"<{parse_name_addr(self.from_hdr).uri}>")
        req.add("Contact", self.contact)
        req.add("Allow", ALLOW)
        req.add("User-Agent", self.user_agent)
        refer = self._refer = _Refer(uri, req.cseq[0])
        log.info("sip.refer", call_id=self.call_id, refer_to=uri)

        def on_response(resp: SipMessage, now: float) -> None:
            code = resp.status or 0
            if code < 200 or self._refer is not refer:
                return
            if code < 300:
                refer.accepted = True
                self._out.append(TransferProgress(code, resp.reason or "Accepted", final=False))
            else:
                self._transfer_over(TransferProgress(code, resp.reason or "", final=True), now)

        def on_timeout(now: float) -> None:
            if self._refer is refer:
                self._transfer_over(TransferProgress(408, "REFER not answered", final=True), now)

        self._start_tx(req, self._dialog_dest(), now, on_response=on_response, on_timeout=on_timeout)
        return self._flush()

    @property
    def refer_target_uri(self) -> str | None:
        """The Refer-To URI of the transfer in progress."""
        return self._refer.target if self._refer is not None else None

    def _transfer_over(self, progress: TransferProgress, now: float) -> None:
        """Report the transfer's end; on success the far end talks to the target now: BYE."""
        refer, self._refer = self._refer, None
        log.info("sip.transfer_over", call_id=self.call_id, code=progress.code, reason=progress.reason,
                 succeeded=progress.succeeded)
        self._out.append(progress)
        if progress.succeeded and refer is not None and self.ended is None and self.state == "confirmed":
            self._send_bye(now)
            self._end(Ended("completed", f"transferred to {refer.target}", None, "system"))

    @property
    def peer_ips(self) -> set[str]:
        """The addresses this call exchanges SIP with (the endpoint accepts only those)."""
        return {self.dest[0], *self._foreign_peers}

    def on_message(self, msg: SipMessage, now: float, addr: tuple[str, int] | None = None) -> list[Output]:
        """A message with our Call-ID. ``addr``: where it came from (a request's responses go
        there; a response's source decides whether its challenge may pin the realm)."""
        if msg.is_request:
            self._now = now
            self._on_request(msg, addr or self._dialog_dest())
        else:
            self._resp_from = addr
            try:
                self._on_response(msg, now)
            finally:
                self._resp_from = None
        return self._flush()

    def on_timer(self, timer_id: TimerId, now: float) -> list[Output]:
        """A timer armed by an :class:`ArmTimer` is due."""
        if timer_id.method:
            pending = self._txs.get((timer_id.branch, timer_id.method))
            if pending is not None:
                actions, timed_out = pending.tx.fire(timer_id.name, now)
                self._out.extend(actions)
                self._settle(pending)
                if timed_out and pending.on_timeout is not None:
                    pending.on_timeout(now)
        elif timer_id in self._armed:
            self._armed.discard(timer_id)
            if timer_id == RING_TIMEOUT:
                self._ring_timeout(now)
            elif timer_id == CANCEL_GUARD:
                self._cancel_guard()
            elif timer_id == SESSION_REFRESH:
                self._refresh_session(now)
            elif timer_id == SESSION_EXPIRY:
                self._session_lost(now, "session expired: the far end did not refresh it")
            elif timer_id == ABANDON_INVITE:
                self._abandon_invite()
            elif timer_id == FAILOVER and not self._got_provisional:
                self._failover(f"no response in {self.timers.failover_s:g} s", now)
        return self._flush()

    def media_timeout(self, now: float) -> list[Output]:
        """No RTP for too long after the answer: BYE, status failed."""
        if self.ended is None and self.state == "confirmed":
            self._send_bye(now)
            self._end(Ended("failed", "media timeout", None, "system"))
        return self._flush()

    def media_dtmf(self, digit: str, duration_ms: int, method: str) -> list[Output]:
        """A digit the media detected (RFC 4733 or in-band)."""
        if self.ended is None:
            self._out.append(DtmfReceived(digit, duration_ms, method))
        return self._flush()

    def transport_failed(self, reason: str, now: float) -> list[Output]:
        """The TCP/TLS connection to the trunk could not be made or broke: RFC 3261 17.1.1.2
        tells the transaction user at once (no Timer B wait); the call fails with the reason,
        unless the INVITE can go to the trunk's next server."""
        for pending in list(self._txs.values()):
            self._out.extend(pending.tx.abort())
        self._txs.clear()
        if self.ended is None and not self._failover(reason, now):
            self._end(Ended("failed", reason, None, "system"))
        return self._flush()

    def abort(self, now: float) -> list[Output]:
        """Carrier shutdown: stop every transaction now."""
        for pending in list(self._txs.values()):
            self._out.extend(pending.tx.abort())
        self._txs.clear()
        if self.ended is None:
            self._end(Ended("failed", "carrier closed", None, "system"))
        return self._flush()

    # --- requests and transactions ------------------------------------------------------
    def _request(self, method: str, *, in_dialog: bool, cseq: int | None = None, via: str | None = None) -> SipMessage:
        """Every request of this call: in-dialog ones carry the remote tag, target and route set."""
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        uri = self.remote_target if in_dialog and self.remote_target else self.request_uri
        to = self.to_hdr + (f";tag={self.remote_tag}" if in_dialog and self.remote_tag else "")
        return build_request(
            method, uri, via=via or self._new_via(), from_=self.from_hdr, to=to, call_id=self.sip_call_id,
            cseq=cseq, routes=self.route_set if in_dialog else (),
        )

    def _new_via(self) -> str:
        return f"SIP/2.0/{self.transport.upper()} {self._via_host};branch={new_branch()};rport"

    def _start_tx(self, msg: SipMessage, dest: tuple[str, int], now: float, *,
                  on_response: Callable[[SipMessage, float], None] | None = None,
                  on_timeout: Callable[[float], None] | None = None) -> None:
        """The one way a request of this call goes out (INVITE, CANCEL, BYE and their retries)."""
        tx = ClientTx(msg, dest, self.timers, reliable=self.reliable)
        self._txs[tx.key] = _Pending(tx, on_response, on_timeout)
        self._out.extend(tx.start(now))

    def _settle(self, pending: _Pending) -> None:
        if pending.tx.terminated and self._txs.get(pending.tx.key) is pending:
            del self._txs[pending.tx.key]

    def _on_response(self, resp: SipMessage, now: float) -> None:
        try:
            _, method = resp.cseq
            branch = resp.top_via.branch or ""
        except (ValueError, SipParseError):
            return
        pending = self._txs.get((branch, method))
        if pending is None:
            # A 2xx retransmission after the INVITE transaction ended: of our INVITE now, not
            # one a server we failed over from answers late.
            if method == "INVITE" and 200 <= (resp.status or 0) < 300 and self._invite is not None \
                    and branch == (self._invite.top_via.branch or ""):
                self._on_2xx(resp, now)
            else:
                log.debug("sip.stray_response", call_id=self.call_id, first_line=resp.first_line())
            return
        actions, report = pending.tx.receive(resp, now)
        self._out.extend(actions)
        self._settle(pending)
        if report and pending.on_response is not None:
            pending.on_response(resp, now)

    # --- INVITE ------------------------------------------------------------------------
    def _build_invite(self) -> SipMessage:
        msg = self._request("INVITE", in_dialog=False)
        msg.add("Contact", self.contact)
        msg.add("Allow", ALLOW)
        msg.add("Supported", "100rel, timer")  # reliable provisionals (RFC 3262), session timers (RFC 4028)
        msg.add("Session-Expires", str(self.session_expires_s))
        msg.add("Min-SE", str(self.min_se_s))
        msg.add("User-Agent", self.user_agent)
        msg.add("Content-Type", "application/sdp")
        msg.body = build_offer(
            self.local_ip, self.media_port, session_id=self._sdp_session_id, version=self._sdp_version,
            crypto=self._offered,
        ).encode()
        return msg

    def _send_invite(self, msg: SipMessage, now: float) -> None:
        self._invite = msg
        self._got_provisional = False
        self._cancel_sent = False
        self._start_tx(msg, self.dest, now, on_response=self._on_invite_response, on_timeout=self._on_invite_timeout)
        if self._targets and not self.reliable:
            # Timer B is 32 s: the next server must not wait for it (a connection refused
            # or timed out is reported at once on TCP/TLS).
            self._arm(FAILOVER, now + self.timers.failover_s)

    def _on_invite_timeout(self, now: float) -> None:
        # Timer B: the trunk never answered at all, which is not "no-answer" by the callee.
        if not self._failover("no response (timeout)", now):
            self._end(Ended("failed", "no response from SIP trunk (timeout)", None, "system"))

    def _failover(self, why: str, now: float) -> bool:
        """Send the INVITE to the trunk's next server instead (RFC 3263 4.3: a new transaction,
        the same call); False when there is none left or the call is past trying."""
        if not self._targets or self.ended is not None or self._cancel_reason is not None \
                or self.state not in ("calling", "early"):
            return False
        self.tried.append(f"{self.target}: {why}")
        self._disarm(FAILOVER)
        for pending in list(self._txs.values()):
            self._out.extend(pending.tx.abort())
        self._txs.clear()
        self.target = self._targets.pop(0)
        self.dest = (self.target.address, self.target.port)
        # A new server: its own digest challenge and reliable-provisional numbering.
        self._auth, self._realm, self._auth_refused, self._rseq = _Auth(), self.policy.realm, None, None
        if self._offered:  # the server failed over from may have read our keys: fresh ones for the next
            self._offered = our_offer()
        log.info("sip.failover", call_id=self.call_id, failed=self.tried[-1], next=str(self.target))
        self._send_invite(self._build_invite(), now)
        return True

    def _with_tried(self, reason: str) -> str:
        """``reason``, and the servers tried before this one, if any."""
        return reason if not self.tried else f"{reason} (at {self.target}; tried before: {'; '.join(self.tried)})"

    def _on_invite_response(self, resp: SipMessage, now: float) -> None:
        code = resp.status or 0
        if code < 200:
            self._on_provisional(resp, now)
        elif code < 300:
            self._on_2xx(resp, now)
        elif code in (401, 407) and self._retry_with_auth(resp, self._invite, now):
            return
        elif code in (401, 407) and self._auth_refused:
            self._disarm(RING_TIMEOUT)
            self._end(Ended("failed", self._auth_refused, code, "system"))
        else:
            self._on_failure(resp, now)

    def _on_provisional(self, resp: SipMessage, now: float) -> None:
        code = resp.status or 0
        self._got_provisional = True
        self._disarm(FAILOVER)
        if self._cancel_reason is not None and not self._cancel_sent:
            self._send_cancel(now)  # CANCEL had to wait for a provisional (RFC 3261 9.1)
            return
        if code > 100:
            self._prack(resp, now)
        if code in (180, 183) and self.state == "calling" and self.ended is None:
            early = False
            if code == 183 and resp.body:
                early = self._apply_answer(resp.body, early=True)
            if not self._rang:
                self._rang = True
                self.state = "early"
                self._out.append(Ringing(early_media=early))

    # --- session timers (RFC 4028) ----------------------------------------------------------
    def _session_agreed(self, value: str | None, now: float, *, default_refresher: str) -> None:
        """``Session-Expires: N;refresher=...`` of a 2xx or a refresh: arm our refresh at N/2, or
        the expiry guard when the far end refreshes. Without the header there is no timer."""
        self._disarm(SESSION_REFRESH)
        self._disarm(SESSION_EXPIRY)
        parsed = parse_session_expires(value) if value else None
        if value and parsed is None:
            log.warning("sip.bad_session_expires", call_id=self.call_id, value=value)
        if parsed is None:
            self.session = None
            return
        interval, refresher = parsed[0], parsed[1] or default_refresher
        self.session = (interval, refresher)
        if refresher == "uac":
            self._arm(SESSION_REFRESH, now + interval / 2)
        else:
            self._arm(SESSION_EXPIRY, now + interval - min(32, interval / 3))

    def _refresh_session(self, now: float) -> None:
        if self.state != "confirmed" or self.ended is not None or self.session is None:
            return
        update = self._request("UPDATE", in_dialog=True)
        update.add("Contact", self.contact)
        update.add("Supported", "timer")
        update.add("Session-Expires", f"{self.session[0]};refresher=uac")
        update.add("User-Agent", self.user_agent)

        def on_response(resp: SipMessage, now: float) -> None:
            code = resp.status or 0
            if 200 <= code < 300:
                self._session_agreed(resp.get("Session-Expires"), now, default_refresher="uac")
            elif code in (401, 407):
                self._retry_with_auth(resp, update, now)
            elif code in (408, 481):
                self._session_lost(now, f"session refresh refused ({code})")
            elif code >= 300 and self.session is not None:
                self._arm(SESSION_REFRESH, now + self.session[0] / 2)  # keep trying; the far end keeps the call

        def on_timeout(now: float) -> None:
            self._session_lost(now, "session refresh unanswered")

        self._start_tx(update, self._dialog_dest(), now, on_response=on_response, on_timeout=on_timeout)

    def _session_lost(self, now: float, reason: str) -> None:
        """RFC 4028 10: a session not refreshed in time is over: BYE, and say why."""
        if self.ended is None and self.state == "confirmed":
            log.warning("sip.session_expired", call_id=self.call_id, reason=reason)
            self._send_bye(now)
            self._end(Ended("failed", reason, None, "system"))

    def _prack(self, resp: SipMessage, now: float) -> None:
        """A reliable provisional (``Require: 100rel``) is acknowledged with a PRACK in its early
        dialog (RFC 3262 4): once per RSeq, in order; a retransmission or a skipped number is not.
        The PRACK keeps to the trunk's addresses like every in-dialog request (see _learn_dialog)."""
        required = {t.strip().lower() for t in (resp.get("Require") or "").split(",")}
        if "100rel" not in required or self._invite is None:
            return
        try:
            rseq = int((resp.get("RSeq") or "").strip())
        except ValueError:
            log.warning("sip.bad_rseq", call_id=self.call_id, rseq=resp.get("RSeq"))
            return
        if not 0 < rseq < 2 ** 31 or (self._rseq is not None and rseq != self._rseq + 1):
            return
        self._rseq = rseq
        target, routes = self.request_uri, list(reversed(resp.get_all("Record-Route")))
        try:
            contacts = resp.get_all("Contact")
            if contacts:
                target = parse_name_addr(contacts[0]).uri
            hosts = [uri_hostport(target)[0]] + [uri_hostport(parse_name_addr(r).uri)[0] for r in routes]
        except ValueError:  # SipParseError too
            target, routes, hosts = self.request_uri, [], []
        if not self.policy.allow_foreign_hops and any(h.strip("[]").lower() not in self._trunk_hosts for h in hosts):
            target, routes = self.request_uri, []
        self.cseq += 1
        prack = build_request("PRACK", target, via=self._new_via(), from_=self.from_hdr,
                              to=f"{self.to_hdr};tag={resp.to.tag}" if resp.to.tag else self.to_hdr,
                              call_id=self.sip_call_id, cseq=self.cseq, routes=routes)
        prack.add("RAck", f"{rseq} {self._invite.cseq[0]} INVITE")
        prack.add("User-Agent", self.user_agent)
        self._start_tx(prack, self.dest, now)

    def _on_2xx(self, resp: SipMessage, now: float) -> None:
        if self.state == "confirmed" or self.remote_tag is not None:
            self._resend_ack(resp)  # 2xx retransmission (or a second fork: ACK it too)
            return
        self.remote_tag = resp.to.tag
        refused = self._learn_dialog(resp)
        self._send_ack()
        self._disarm(RING_TIMEOUT)
        if refused is not None and self.ended is None:
            # Nothing went to the hop: the ACK and this BYE go to the trunk itself.
            self.state = "confirmed"
            self._send_bye(now)
            self._end(Ended("failed", refused, resp.status, "system"))
            return
        if self.ended is not None or self._cancel_reason is not None:
            # We already gave up (CANCEL crossed the 200 OK): the call must still be
            # torn down with a BYE (RFC 3261 15).
            if self.ended is None:
                self.state = "confirmed"
            self._send_bye(now)
            if self.ended is None:
                reason = self._cancel_reason
                self._end(Ended("no-answer" if reason == "timeout" else "canceled",
                                "answered after cancel", None, "system" if reason == "timeout" else "caller"))
            return
        self.state = "confirmed"
        if not self._apply_answer(resp.body, early=False):
            self._send_bye(now)
            self._end(Ended("failed", self._answer_refused or "no usable SDP answer", resp.status, "system"))
            return
        self._out.append(StartMedia(send=True))
        log.info("sip.answered", call_id=self.call_id, codec=self.codec_pt, dtmf_pt=self.dtmf_pt,
                 srtp=self.srtp_keys.suite if self.srtp_keys else None)
        self._out.append(Answered())
        self._session_agreed(resp.get("Session-Expires"), now, default_refresher="uac")

    def _learn_dialog(self, resp: SipMessage) -> str | None:
        """Take the 2xx's remote target and route set; the reason to refuse them, if any.

        Refused (a hop off the trunk's addresses without ``allow_foreign_hops``, or a
        Contact / Record-Route we cannot read), the dialog keeps the trunk as its only hop
        and the Request-URI of the INVITE, so nothing is ever sent where the 2xx pointed."""
        try:
            contacts = resp.get_all("Contact")
            target = parse_name_addr(contacts[0]).uri if contacts else self.request_uri
            routes = list(reversed(resp.get_all("Record-Route")))
            hops = [("Contact", uri_hostport(target)[0])] + [
                ("Record-Route", uri_hostport(parse_name_addr(r).uri)[0]) for r in routes]
        except ValueError:  # SipParseError too
            log.warning("sip.bad_dialog_headers", call_id=self.call_id)
            return "SIP trunk answered with an unreadable Contact or Record-Route"
        foreign = [(name, host) for name, host in hops if host.strip("[]").lower() not in self._trunk_hosts]
        if foreign and not self.policy.allow_foreign_hops:
            name, host = foreign[0]
            log.warning("sip.foreign_hop_refused", call_id=self.call_id, header=name, host=host)
            return f"SIP trunk answered with a {name} off the trunk ({host}): refused"
        self.remote_target, self.route_set = target, routes
        self._foreign_peers = {h.strip("[]") for _, h in foreign if is_ip(h.strip("[]"))}
        return None

    def _apply_answer(self, body: bytes, *, early: bool) -> bool:
        self._answer_refused = None
        try:
            ans = parse_sdp(body.decode("utf-8", "replace"))
            codec = ans.codec
            keys = keys_of_answer(ans, self._offered)
        except CryptoError as exc:
            log.warning("sip.srtp_refused", call_id=self.call_id, error=str(exc))
            self._answer_refused = f"SRTP: {exc}"
            return False
        except ValueError as exc:  # SdpError, or anything else a malformed body causes
            log.warning("sip.bad_sdp", call_id=self.call_id, error=str(exc))
            return False
        self.codec_pt, self.dtmf_pt, self.srtp_keys = codec, ans.dtmf_pt, keys
        self._out.append(SetRemoteMedia(ans.ip, ans.port, codec, ans.codec_name, ans.dtmf_pt, keys))
        if early:
            self._out.append(StartMedia(send=False))  # listen to early media (ringback, announcements)
        return True

    def _on_failure(self, resp: SipMessage, now: float) -> None:
        if resp.status == 503 and self._failover(f"503 {resp.reason}".strip(), now):
            return
        self._disarm(RING_TIMEOUT)
        ended = map_final_response(resp.status or 0, resp.reason, canceled_by=self._cancel_reason)
        log.info("sip.call_failed", call_id=self.call_id, code=resp.status, status=ended.status)
        self._end(ended)

    # --- ACK (for 2xx: the dialog's; for non-2xx the transaction ACKs) -------------------
    def _send_ack(self) -> None:
        assert self._invite is not None
        ack = self._request("ACK", in_dialog=True, cseq=self._invite.cseq[0])
        for name in ("Authorization", "Proxy-Authorization"):
            value = self._invite.get(name)
            if value:
                ack.add(name, value)  # RFC 3261 22.1: ACK for 2xx repeats the credentials
        ack.add("Contact", self.contact)
        self._ack = ack
        self._out.append(Send(ack, self._dialog_dest()))

    def _resend_ack(self, resp: SipMessage) -> None:
        if self._ack is not None and resp.to.tag == self.remote_tag:
            self._out.append(Send(self._ack, self._dialog_dest()))
        elif resp.to.tag != self.remote_tag:
            # A second forked 2xx (a different To tag): not supported, only logged; a
            # trunk forks rarely, and it will time the unACKed leg out (Timer H).
            log.info("sip.extra_fork_answered", call_id=self.call_id)

    def _dialog_dest(self) -> tuple[str, int]:
        # Loose routing: with a route set the first hop is the first Route, otherwise
        # the trunk. Sending in-dialog requests to the trunk (not the Contact) is what
        # SIP trunks expect behind their SBCs.
        # A hop on the trunk goes to its vetted address, never to a name resolved again.
        if self.route_set:
            try:
                host, port = uri_hostport(parse_name_addr(self.route_set[0]).uri)
            except ValueError:
                return self.dest
            if host.strip("[]").lower() in self._trunk_hosts:
                return self.dest[0], port or 5060
            if self.policy.allow_foreign_hops:
                return host.strip("[]"), port or 5060
        return self.dest

    # --- CANCEL and ring timeout ---------------------------------------------------------
    def _ring_timeout(self, now: float) -> None:
        if self.state in ("calling", "early") and self._cancel_reason is None:
            log.info("sip.ring_timeout", call_id=self.call_id, timeout_s=self.request.timeout_s)
            self._cancel_call("timeout", now)

    def _cancel_call(self, reason: str, now: float) -> None:
        if self._cancel_reason is not None:
            return
        self._disarm(RING_TIMEOUT)
        self._cancel_reason = reason
        if self._got_provisional:
            self._send_cancel(now)
        # Do not make the caller wait for a slow 487: report after 8*T1 anyway; the
        # INVITE transaction is abandoned after 64*T1 (RFC 3261 9.1).
        self._arm(CANCEL_GUARD, now + 8 * self.timers.t1)
        self._arm(ABANDON_INVITE, now + 64 * self.timers.t1)

    def _send_cancel(self, now: float) -> None:
        inv = self._invite
        assert inv is not None
        self._cancel_sent = True
        # RFC 3261 9.1: the INVITE's Request-URI, Call-ID, From, To, CSeq number and top
        # Via (same branch: it matches the INVITE). The INVITE is out of dialog.
        cancel = self._request("CANCEL", in_dialog=False, cseq=inv.cseq[0], via=inv.get_all("Via")[0])
        cancel.add("User-Agent", self.user_agent)
        self._start_tx(cancel, self.dest, now)

    def _abandon_invite(self) -> None:
        if self._invite is None:
            return
        pending = self._txs.get((self._invite.top_via.branch or "", "INVITE"))
        if pending is not None and pending.tx.state in ("calling", "proceeding"):
            self._out.extend(pending.tx.abort())
            self._settle(pending)

    def _cancel_guard(self) -> None:
        if self.ended is None:
            reason = self._cancel_reason
            if reason == "timeout" and not self._got_provisional:
                self._end(Ended("failed", "no response from SIP trunk", None, "system"))
                return
            self._end(Ended("no-answer" if reason == "timeout" else "canceled",
                            "no final response to CANCEL", None, "system" if reason == "timeout" else "caller"))

    # --- BYE -------------------------------------------------------------------------------
    def _send_bye(self, now: float) -> None:
        bye = self._request("BYE", in_dialog=True)
        bye.add("User-Agent", self.user_agent)
        self._start_bye(bye, now)

    def _start_bye(self, bye: SipMessage, now: float) -> None:
        def on_response(resp: SipMessage, now: float) -> None:
            if resp.status in (401, 407):
                self._retry_with_auth(resp, bye, now)

        self._start_tx(bye, self._dialog_dest(), now, on_response=on_response)

    # --- digest auth -------------------------------------------------------------------------
    def _retry_with_auth(self, resp: SipMessage, req: SipMessage | None, now: float) -> bool:
        """Answer a 401/407 by resending ``req`` with credentials; False if we cannot."""
        if req is None or not self.trunk.username or self.trunk.password is None:
            return False
        header = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        # Not get_all(): a challenge's own parameters are comma-separated.
        values = [v for k, v in resp.headers if k == header]
        if not values:
            return False
        try:
            ch = parse_challenge(values[0])
        except DigestError as exc:
            log.warning("sip.auth_unsupported", call_id=self.call_id, error=str(exc))
            return False
        refused = self._challenge_refused(ch)
        if refused is not None:
            self._auth_refused = refused
            log.warning("sip.auth_refused", call_id=self.call_id, method=req.method, reason=refused,
                        realm=ch.realm, code=resp.status)
            return False
        method = req.method or ""
        # One try per nonce unless the server says the nonce was merely stale; this
        # stops a loop of 401s when the credentials are wrong.
        tries = self._auth.tries.get(method, 0)
        if tries >= 1 and not ch.stale:
            log.warning("sip.auth_rejected", call_id=self.call_id, method=method, realm=ch.realm)
            return False
        if tries >= 3:
            return False
        self._auth.tries[method] = tries + 1
        self._auth.nc += 1
        try:
            value = authorization(ch, method=method, uri=req.uri or "", username=self.trunk.username,
                                  password=self.trunk.password, nc=self._auth.nc)
        except DigestError as exc:
            log.warning("sip.auth_unsupported", call_id=self.call_id, error=str(exc))
            return False
        # The same request as a new transaction: new branch, next CSeq, the credentials.
        self.cseq += 1
        new = SipMessage(method=method, uri=req.uri, body=req.body)
        new.add("Via", self._new_via())
        for k, v in req.headers:
            if k == "CSeq":
                new.add("CSeq", f"{self.cseq} {method}")
            elif k not in ("Via", "Authorization", "Proxy-Authorization"):
                new.add(k, v)
        new.add("Authorization" if resp.status == 401 else "Proxy-Authorization", value)
        log.info("sip.auth_retry", call_id=self.call_id, method=method, realm=ch.realm, code=resp.status)
        if method == "INVITE":
            self._send_invite(new, now)
        else:
            self._start_bye(new, now)
        return True

    def _challenge_refused(self, ch) -> str | None:
        """Why a challenge must not be answered with the trunk's password; None: answer it.

        The realm is pinned: to the policy's, else to the first one a response from the
        trunk's own address named (a challenge from anywhere else cannot set it). A
        challenge without qop is the RFC 2069 form, refused unless the policy allows it."""
        if self._realm is None:
            src = self._resp_from
            if src is None or src[0] != self.dest[0]:
                return "SIP digest challenge not from the trunk's address: not answered"
            self._realm = ch.realm
        if ch.realm != self._realm:
            return f"SIP digest challenge for realm {ch.realm!r}, not the trunk's {self._realm!r}: not answered"
        if not ch.qop and not self.policy.allow_legacy_digest:
            return "SIP digest challenge without qop (legacy digest) refused for this trunk"
        return None

    # --- incoming requests -------------------------------------------------------------------
    def _on_request(self, req: SipMessage, addr: tuple[str, int]) -> None:
        method = req.method
        if method == "ACK":
            return
        if method == "BYE":
            self._out.append(Send(make_response(req, 200, "OK"), addr))
            if self.ended is None:
                log.info("sip.bye_received", call_id=self.call_id)
                self._end(Ended("completed", "callee hung up", None, "callee"))
            return
        if method == "OPTIONS":
            resp = make_response(req, 200, "OK")
            resp.add("Allow", ALLOW)
            self._out.append(Send(resp, addr))
            return
        if method == "INFO":
            self._out.append(Send(make_response(req, 200, "OK"), addr))
            self._info_dtmf(req)
            return
        if method == "INVITE" and self.state == "confirmed":
            self._reinvite(req, addr)
            return
        if method == "NOTIFY":
            self._notify(req, addr)
            return
        if method == "UPDATE" and self.state == "confirmed" and not req.body:
            # A session refresh from the far end (RFC 4028 with RFC 3311); an UPDATE that
            # changes the media is not taken (488), the call keeps its session.
            resp = make_response(req, 200, "OK")
            resp.add("Contact", self.contact)
            self._refreshed_by_peer(req, resp)
            self._out.append(Send(resp, addr))
            return
        if method == "UPDATE":
            self._out.append(Send(make_response(req, 488 if req.body else 481,
                                                "Not Acceptable Here" if req.body else "Call Does Not Exist"), addr))
            return
        self._out.append(Send(make_response(req, 501, "Not Implemented"), addr))

    def _notify(self, req: SipMessage, addr: tuple[str, int]) -> None:
        """A NOTIFY of our REFER's subscription (RFC 3515 2.4.4): 200 OK, then its sipfrag (the
        transferee's call to the target) is reported; a final status, or the subscription
        terminated, ends the transfer. A NOTIFY for any other subscription is 481 (489 for an
        event package other than refer); an unreadable sipfrag is answered and ignored."""
        event, *params = [p.strip() for p in (req.get("Event") or "").split(";")]
        if event.lower() != "refer":
            self._out.append(Send(make_response(req, 489, "Bad Event"), addr))
            return
        refer = self._refer
        sub_id = next((v.strip() for k, _, v in (p.partition("=") for p in params) if k.strip().lower() == "id"), None)
        if refer is None or self.ended is not None or (sub_id is not None and sub_id != str(refer.cseq)):
            self._out.append(Send(make_response(req, 481, "Subscription Does Not Exist"), addr))
            return
        self._out.append(Send(make_response(req, 200, "OK"), addr))
        state = (req.get("Subscription-State") or "").split(";")[0].strip().lower()
        frag = None
        if "message/sipfrag" in (req.get("Content-Type") or "").lower():
            frag = parse_sipfrag(req.body)
        if frag is None:
            log.warning("sip.bad_sipfrag", call_id=self.call_id, content_type=req.get("Content-Type"),
                        body=req.body[:80].decode("utf-8", "replace"))
        refer.accepted = True  # a NOTIFY may overtake the 202
        if frag is not None and frag[0] >= 200:
            self._transfer_over(TransferProgress(frag[0], frag[1], final=True), self._now)
        elif state == "terminated":
            self._transfer_over(TransferProgress(None, "transfer outcome not reported", final=True), self._now)
        elif frag is not None:
            self._out.append(TransferProgress(frag[0], frag[1], final=False))

    def _refreshed_by_peer(self, req: SipMessage, resp: SipMessage) -> None:
        """The far end refreshed the session (re-INVITE or UPDATE): echo the interval it asks and
        re-arm our side; its refresher choice is kept (uas unless it says uac)."""
        parsed = parse_session_expires(req.get("Session-Expires") or "")
        if parsed is None:
            return
        agreed = f"{parsed[0]};refresher={parsed[1] or 'uas'}"
        resp.add("Require", "timer")
        resp.add("Session-Expires", agreed)
        self._session_agreed(agreed, self._now, default_refresher="uas")

    def _info_dtmf(self, req: SipMessage) -> None:
        # SIP INFO application/dtmf-relay ("Signal=5\r\nDuration=160"), used by some trunks.
        if self.ended is not None or "dtmf" not in (req.get("Content-Type") or "").lower():
            return
        fields = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (line.partition("=") for line in req.body.decode("utf-8", "replace").splitlines())
        )
        digit = fields.get("signal", "")
        if len(digit) == 1 and digit.upper() in "0123456789*#ABCD":
            dur = fields.get("duration", "0")
            ok = 0 < len(dur) <= 6 and dur.isascii() and dur.isdigit()
            self._out.append(DtmfReceived(digit.upper(), int(dur) if ok else 0, "info"))

    def _reinvite(self, req: SipMessage, addr: tuple[str, int]) -> None:
        # Session refresh or media change: follow the new address, keep our stream (and our
        # SRTP key: the peer may send a new one of its own).
        crypto: tuple[Crypto, ...] = ()
        offer = None
        if req.body:
            try:
                offer = parse_sdp(req.body.decode("utf-8", "replace"))
                codec = offer.codec
            except ValueError as exc:  # SdpError: the stream stays as it is
                log.warning("sip.bad_sdp", call_id=self.call_id, error=str(exc))
                offer = None
        if offer is not None:
            try:
                found = keys_of_offer(self.srtp_mode, offer, self.srtp_keys.local if self.srtp_keys else None)
                if (found is None) != (self.srtp_keys is None) or (
                        found is not None and self.srtp_keys is not None and found[1].suite != self.srtp_keys.suite):
                    raise CryptoError("a re-INVITE may not turn SRTP on or off or change its suite")
            except CryptoError as exc:
                log.warning("sip.reinvite_refused", call_id=self.call_id, error=str(exc))
                self._out.append(Send(make_response(req, 488, "Not Acceptable Here"), addr))
                return
            keys = found[1] if found else None
            crypto = (found[0],) if found else ()
            self.codec_pt, self.dtmf_pt, self.srtp_keys = codec, offer.dtmf_pt, keys
            self._out.append(SetRemoteMedia(offer.ip, offer.port, codec, offer.codec_name, offer.dtmf_pt, keys))
        elif self.srtp_keys is not None:
            # No usable offer: our SDP carries our key again (tag 1, the suite in use).
            crypto = (Crypto(1, self.srtp_keys.suite, self.srtp_keys.local),)
        self._sdp_version += 1
        resp = make_response(req, 200, "OK")
        resp.add("Contact", self.contact)
        self._refreshed_by_peer(req, resp)
        resp.add("Content-Type", "application/sdp")
        resp.body = build_offer(
            self.local_ip, self.media_port, session_id=self._sdp_session_id, version=self._sdp_version,
            payloads=(self.codec_pt,), dtmf_pt=self.dtmf_pt or 101, crypto=crypto,
        ).encode()
        self._out.append(Send(resp, addr))

    # --- lifecycle ---------------------------------------------------------------------------
    def _arm(self, timer_id: TimerId, at: float) -> None:
        self._armed.add(timer_id)
        self._out.append(ArmTimer(timer_id, at))

    def _disarm(self, timer_id: TimerId) -> None:
        if timer_id in self._armed:
            self._armed.discard(timer_id)
            self._out.append(CancelTimer(timer_id))

    def _end(self, ended: Ended) -> None:
        if self.ended is not None:
            return
        if self.tried:  # the call's reason names the servers that failed before this one
            ended = Ended(ended.status, self._with_tried(ended.reason), ended.sip_code, ended.hangup_by)
        self.ended = ended
        self.state = "terminated"
        self._disarm(RING_TIMEOUT)
        self._disarm(CANCEL_GUARD)
        self._out.append(CloseMedia())
        self._out.append(ended)
        log.info("sip.ended", call_id=self.call_id, status=ended.status, code=ended.sip_code,
                 hangup_by=ended.hangup_by, reason=ended.reason)

    def _flush(self) -> list[Output]:
        # The call stays reachable until its transactions are done, so a late 200 OK
        # can still be ACKed and BYEd, and a retransmitted final ACKed, after Ended.
        if self.ended is not None and not self._txs and not self.finished:
            self.finished = True
            for timer_id in list(self._armed):
                self._disarm(timer_id)
            self._out.append(Finished())
        out, self._out = self._out, []
        return out
