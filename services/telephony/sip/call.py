"""The UAC side of one SIP call: INVITE/CANCEL/BYE, the dialog, and CallSession."""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Callable

import structlog

from services.telephony.carrier import (
    Answered,
    CarrierEvent,
    DialRequest,
    DtmfReceived,
    Ended,
    Ringing,
    TrunkConfig,
)

from .digest import DigestError, authorization, parse_challenge
from .mapping import map_final_response
from .media import MediaSession
from .message import SipMessage, parse_name_addr, uri_hostport
from .sdp import SdpError, build_offer, parse_sdp
from .transaction import ClientTransaction
from .transport import make_response, new_branch, new_tag

if TYPE_CHECKING:
    from .transport import SipEndpoint

log = structlog.get_logger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"


def sip_uri(number: str, host: str, port: int) -> str:
    """``+15551234567`` -> ``sip:+15551234567@host:port``; full SIP URIs pass through."""
    if number.startswith(("sip:", "sips:")):
        return number
    user = "".join(ch for ch in number if ch.isalnum() or ch in "+*#-._")
    hostport = host if port == 5060 else f"{host}:{port}"
    return f"sip:{user}@{hostport}"


class SipCall:
    """One outbound call leg (implements services.telephony.carrier.CallSession)."""

    def __init__(
        self,
        request: DialRequest,
        trunk: TrunkConfig,
        endpoint: SipEndpoint,
        media: MediaSession,
        local_ip: str,
        *,
        on_finished: Callable[[SipCall], None],
        user_agent: str = "canary-voice",
    ) -> None:
        self.call_id = request.call_id
        self.events: asyncio.Queue[CarrierEvent] = asyncio.Queue()
        self.request = request
        self.trunk = trunk
        self.endpoint = endpoint
        self.media = media
        self.local_ip = local_ip
        self.user_agent = user_agent
        self._on_finished = on_finished
        self.dest = (trunk.host, trunk.port)
        self.sip_call_id = f"{os.urandom(12).hex()}@{local_ip}"
        self.local_tag = new_tag()
        self.remote_tag: str | None = None
        self.remote_target: str | None = None
        self.route_set: list[str] = []
        self.cseq = 0
        self.state = "init"  # init, calling, early, confirmed, ended
        self.ended: Ended | None = None
        self.request_uri = sip_uri(request.to, trunk.host, trunk.port)
        caller = trunk.caller_id or request.from_
        local_host = trunk.host if trunk.port == 5060 else f"{trunk.host}:{trunk.port}"
        self.from_hdr = f"<{sip_uri(caller, trunk.host, trunk.port)}>;tag={self.local_tag}"
        self.to_hdr = f"<{self.request_uri}>"
        self._local_host = local_host
        sip_port = endpoint.local_addr[1]
        self.contact = f"<sip:canary@{local_ip}:{sip_port}>"
        self._via_host = f"{local_ip}:{sip_port}"
        self._invite_tx: ClientTransaction | None = None
        self._invite: SipMessage | None = None
        self._got_provisional = False
        self._rang = False
        self._cancel_reason: str | None = None  # "timeout" | "hangup"
        self._cancel_sent = False
        self._ack: SipMessage | None = None
        self._ring_timer: asyncio.TimerHandle | None = None
        self._guard_timer: asyncio.TimerHandle | None = None
        self._auth_tries: dict[str, int] = {}
        self._nc = 0
        self._open_tx: set[ClientTransaction] = set()
        self._ended_evt = asyncio.Event()
        self._sdp_session_id = int(time.time())
        self._sdp_version = 1
        self._loop = asyncio.get_running_loop()

    # --- request building ------------------------------------------------------------
    def _request(self, method: str, *, in_dialog: bool, cseq: int | None = None) -> SipMessage:
        uri = self.remote_target if in_dialog and self.remote_target else self.request_uri
        msg = SipMessage(method=method, uri=uri)
        msg.add("Via", f"SIP/2.0/UDP {self._via_host};branch={new_branch()};rport")
        for route in self.route_set if in_dialog else []:
            msg.add("Route", route)
        msg.add("Max-Forwards", "70")
        msg.add("From", self.from_hdr)
        to = self.to_hdr + (f";tag={self.remote_tag}" if in_dialog and self.remote_tag else "")
        msg.add("To", to)
        msg.add("Call-ID", self.sip_call_id)
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        msg.add("CSeq", f"{cseq} {method}")
        return msg

    def _build_invite(self) -> SipMessage:
        msg = self._request("INVITE", in_dialog=False)
        msg.add("Contact", self.contact)
        msg.add("Allow", ALLOW)
        msg.add("User-Agent", self.user_agent)
        msg.add("Content-Type", "application/sdp")
        msg.body = build_offer(
            self.local_ip, self.media.local_port, session_id=self._sdp_session_id, version=self._sdp_version
        ).encode()
        return msg

    def _start_tx(self, msg: SipMessage, on_final: Callable[[SipMessage], None] | None = None,
                  on_timeout: Callable[[], None] | None = None) -> ClientTransaction:
        def on_response(resp: SipMessage) -> None:
            if (resp.status or 0) >= 200:
                self._open_tx.discard(tx)
                if on_final is not None:
                    on_final(resp)
                self._maybe_finished()

        def timed_out() -> None:
            self._open_tx.discard(tx)
            if on_timeout is not None:
                on_timeout()
            self._maybe_finished()

        tx = ClientTransaction(self.endpoint, msg, self.dest, on_response, timed_out)
        self._open_tx.add(tx)
        tx.start()
        return tx

    # --- INVITE ------------------------------------------------------------------------
    def start(self) -> None:
        """Send the INVITE and arm the ring timeout."""
        if self.trunk.transport.lower() != "udp":
            self._end(Ended("failed", f"unsupported SIP transport {self.trunk.transport}", None, "system"))
            return
        self.state = "calling"
        self._send_invite(self._build_invite())
        self._ring_timer = self._loop.call_later(self.request.timeout_s, self._ring_timeout)
        log.info("sip.invite", call_id=self.call_id, sip_call_id=self.sip_call_id, to=self.request_uri)

    def _send_invite(self, msg: SipMessage) -> None:
        self._invite = msg
        self._got_provisional = False
        self._cancel_sent = False
        tx = ClientTransaction(self.endpoint, msg, self.dest, self._on_invite_response, self._on_invite_timeout)
        self._invite_tx = tx
        self._open_tx.add(tx)
        tx.start()

    def _on_invite_timeout(self) -> None:
        if self._invite_tx is not None:
            self._open_tx.discard(self._invite_tx)
        # Timer B: the trunk never answered at all, which is not "no-answer" by the callee.
        self._end(Ended("failed", "no response from SIP trunk (timeout)", None, "system"))
        self._maybe_finished()

    def _on_invite_response(self, resp: SipMessage) -> None:
        code = resp.status or 0
        if code < 200:
            self._on_provisional(resp)
            return
        if self._invite_tx is not None:
            self._open_tx.discard(self._invite_tx)
        if code < 300:
            self._on_2xx(resp)
        elif code in (401, 407) and self._retry_with_auth(resp, self._invite, self._send_invite):
            return
        else:
            self._on_failure(resp)
        self._maybe_finished()

    def _on_provisional(self, resp: SipMessage) -> None:
        code = resp.status or 0
        self._got_provisional = True
        if self._cancel_reason is not None and not self._cancel_sent:
            self._send_cancel()  # CANCEL had to wait for a provisional (RFC 3261 9.1)
            return
        if code in (180, 183) and self.state == "calling" and self.ended is None:
            early = False
            if code == 183 and resp.body:
                early = self._apply_answer(resp.body, early=True)
            if not self._rang:
                self._rang = True
                self.state = "early"
                self._emit(Ringing(early_media=early))

    def _on_2xx(self, resp: SipMessage) -> None:
        if self.state == "confirmed" or self.remote_tag is not None:
            self._resend_ack(resp)  # 2xx retransmission (or a second fork: ACK it too)
            return
        self.remote_tag = resp.to.tag
        contacts = resp.get_all("Contact")
        self.remote_target = parse_name_addr(contacts[0]).uri if contacts else self.request_uri
        self.route_set = list(reversed(resp.get_all("Record-Route")))
        self._send_ack(resp)
        self.state = "confirmed"
        self._cancel_ring_timer()
        if self.ended is not None or self._cancel_reason is not None:
            # We already gave up (CANCEL crossed the 200 OK): the call must still be
            # torn down with a BYE (RFC 3261 15).
            self._send_bye()
            if self.ended is None:
                reason = self._cancel_reason
                self._end(Ended("no-answer" if reason == "timeout" else "canceled",
                                "answered after cancel", None, "system" if reason == "timeout" else "caller"))
            return
        if not self._apply_answer(resp.body, early=False):
            self._send_bye()
            self._end(Ended("failed", "no usable SDP answer", resp.status, "system"))
            return
        self.media.start(send=True)
        log.info("sip.answered", call_id=self.call_id, codec=self.media.codec_pt, dtmf_pt=self.media.dtmf_pt)
        self._emit(Answered())

    def _apply_answer(self, body: bytes, *, early: bool) -> bool:
        try:
            ans = parse_sdp(body.decode("utf-8", "replace"))
            codec = ans.codec
        except SdpError as exc:
            log.warning("sip.bad_sdp", call_id=self.call_id, error=str(exc))
            return False
        self.media.set_remote(ans.ip, ans.port, codec, ans.codec_name, ans.dtmf_pt)
        if early:
            self.media.start(send=False)  # listen to early media (ringback, announcements)
        return True

    def _on_failure(self, resp: SipMessage) -> None:
        self._cancel_ring_timer()
        self.state = "ended"
        ended = map_final_response(resp.status or 0, resp.reason, canceled_by=self._cancel_reason)
        log.info("sip.call_failed", call_id=self.call_id, code=resp.status, status=ended.status)
        self._end(ended)

    # --- ACK ---------------------------------------------------------------------------
    def _send_ack(self, resp: SipMessage) -> None:
        assert self._invite is not None
        ack = self._request("ACK", in_dialog=True, cseq=self._invite.cseq[0])
        for name in ("Authorization", "Proxy-Authorization"):
            value = self._invite.get(name)
            if value:
                ack.add(name, value)  # RFC 3261 22.1: ACK for 2xx repeats the credentials
        ack.add("Contact", self.contact)
        self._ack = ack
        self.endpoint.send(ack, self._dialog_dest())

    def _resend_ack(self, resp: SipMessage) -> None:
        if self._ack is not None and resp.to.tag == self.remote_tag:
            self.endpoint.send(self._ack, self._dialog_dest())
        elif resp.to.tag != self.remote_tag:
            # A second forked 2xx (a different To tag): not supported, only logged; a
            # trunk forks rarely, and it will time the unACKed leg out (Timer H).
            log.info("sip.extra_fork_answered", call_id=self.call_id)

    def _dialog_dest(self) -> tuple[str, int]:
        # Loose routing: with a route set the first hop is the first Route, otherwise
        # the trunk. Sending in-dialog requests to the trunk (not the Contact) is what
        # SIP trunks expect behind their SBCs.
        if self.route_set:
            try:
                host, port = uri_hostport(parse_name_addr(self.route_set[0]).uri)
                return host, port or 5060
            except ValueError:
                pass
        return self.dest

    # --- CANCEL and ring timeout ---------------------------------------------------------
    def _ring_timeout(self) -> None:
        self._ring_timer = None
        if self.state in ("calling", "early") and self._cancel_reason is None:
            log.info("sip.ring_timeout", call_id=self.call_id, timeout_s=self.request.timeout_s)
            self._cancel("timeout")

    def _cancel(self, reason: str) -> None:
        self._cancel_reason = reason
        if self._got_provisional:
            self._send_cancel()
        # Do not make the caller wait for a slow 487: report after 8*T1 anyway; the
        # INVITE transaction is abandoned after 64*T1 (RFC 3261 9.1).
        t1 = self.endpoint.timers.t1
        self._guard_timer = self._loop.call_later(8 * t1, self._cancel_guard)
        self._loop.call_later(64 * t1, self._abandon_invite)

    def _send_cancel(self) -> None:
        assert self._invite is not None
        self._cancel_sent = True
        inv = self._invite
        cancel = SipMessage(method="CANCEL", uri=inv.uri)
        cancel.add("Via", inv.get_all("Via")[0])  # same branch: it matches the INVITE
        cancel.add("Max-Forwards", "70")
        cancel.add("From", inv.get("From") or "")
        cancel.add("To", inv.get("To") or "")
        cancel.add("Call-ID", inv.call_id)
        cancel.add("CSeq", f"{inv.cseq[0]} CANCEL")
        cancel.add("User-Agent", self.user_agent)
        self._start_tx(cancel)

    def _abandon_invite(self) -> None:
        tx = self._invite_tx
        if tx is not None and tx.state in ("calling", "proceeding"):
            tx.abort()
            self._open_tx.discard(tx)
            self._maybe_finished()

    def _cancel_guard(self) -> None:
        if self.ended is None:
            reason = self._cancel_reason
            if reason == "timeout" and not self._got_provisional:
                self._end(Ended("failed", "no response from SIP trunk", None, "system"))
                return
            self._end(Ended("no-answer" if reason == "timeout" else "canceled",
                            "no final response to CANCEL", None, "system" if reason == "timeout" else "caller"))

    def _cancel_ring_timer(self) -> None:
        if self._ring_timer is not None:
            self._ring_timer.cancel()
            self._ring_timer = None

    # --- BYE -------------------------------------------------------------------------------
    def _send_bye(self) -> None:
        bye = self._request("BYE", in_dialog=True)
        bye.add("User-Agent", self.user_agent)
        self._start_bye_tx(bye)

    def _start_bye_tx(self, bye: SipMessage) -> None:
        def on_final(resp: SipMessage) -> None:
            if resp.status in (401, 407):
                self._retry_with_auth(resp, bye, self._start_bye_tx)

        tx = ClientTransaction(self.endpoint, bye, self._dialog_dest(), lambda r: None, lambda: None)

        def on_response(resp: SipMessage) -> None:
            if (resp.status or 0) >= 200:
                self._open_tx.discard(tx)
                on_final(resp)
                self._maybe_finished()

        def on_timeout() -> None:
            self._open_tx.discard(tx)
            self._maybe_finished()

        tx.on_response, tx.on_timeout = on_response, on_timeout
        self._open_tx.add(tx)
        tx.start()

    # --- digest auth -------------------------------------------------------------------------
    def _retry_with_auth(self, resp: SipMessage, req: SipMessage | None, send: Callable[[SipMessage], None]) -> bool:
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
        # One try per nonce unless the server says the nonce was merely stale; this
        # stops a loop of 401s when the credentials are wrong.
        tries = self._auth_tries.get(req.method or "", 0)
        if tries >= 1 and not ch.stale:
            log.warning("sip.auth_rejected", call_id=self.call_id, method=req.method, realm=ch.realm)
            return False
        if tries >= 3:
            return False
        self._auth_tries[req.method or ""] = tries + 1
        self._nc += 1
        method = req.method or ""
        new = SipMessage(method=method, uri=req.uri, body=req.body)
        for k, v in req.headers:
            if k in ("Via", "CSeq", "Authorization", "Proxy-Authorization"):
                continue
            new.add(k, v)
        new.headers.insert(0, ("Via", f"SIP/2.0/UDP {self._via_host};branch={new_branch()};rport"))
        self.cseq += 1
        new.add("CSeq", f"{self.cseq} {method}")
        try:
            value = authorization(ch, method=method, uri=req.uri or "", username=self.trunk.username,
                                  password=self.trunk.password, nc=self._nc)
        except DigestError as exc:
            log.warning("sip.auth_unsupported", call_id=self.call_id, error=str(exc))
            return False
        new.add("Authorization" if resp.status == 401 else "Proxy-Authorization", value)
        log.info("sip.auth_retry", call_id=self.call_id, method=method, realm=ch.realm, code=resp.status)
        send(new)
        return True

    # --- incoming requests -------------------------------------------------------------------
    def handle_request(self, req: SipMessage, addr: tuple[str, int]) -> None:
        """An in-dialog request routed here by Call-ID."""
        method = req.method
        if method == "ACK":
            return
        if method == "BYE":
            self.endpoint.send(make_response(req, 200, "OK"), addr)
            if self.ended is None:
                log.info("sip.bye_received", call_id=self.call_id)
                self.state = "ended"
                self._end(Ended("completed", "", None, "callee"))
            return
        if method == "OPTIONS":
            resp = make_response(req, 200, "OK")
            resp.add("Allow", ALLOW)
            self.endpoint.send(resp, addr)
            return
        if method == "INFO":
            self.endpoint.send(make_response(req, 200, "OK"), addr)
            self._info_dtmf(req)
            return
        if method == "INVITE" and self.state == "confirmed":
            self._reinvite(req, addr)
            return
        self.endpoint.send(make_response(req, 501, "Not Implemented"), addr)

    def _info_dtmf(self, req: SipMessage) -> None:
        # SIP INFO application/dtmf-relay ("Signal=5\r\nDuration=160"), used by some trunks.
        if "dtmf" not in (req.get("Content-Type") or "").lower():
            return
        fields = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (line.partition("=") for line in req.body.decode("utf-8", "replace").splitlines())
        )
        digit = fields.get("signal", "")
        if len(digit) == 1 and digit.upper() in "0123456789*#ABCD":
            dur = fields.get("duration", "0")
            self._emit(DtmfReceived(digit.upper(), int(dur) if dur.isdigit() else 0, "info"))

    def _reinvite(self, req: SipMessage, addr: tuple[str, int]) -> None:
        # Session refresh or media change: follow the new address, keep our stream.
        if req.body:
            self._apply_answer(req.body, early=False)
        self._sdp_version += 1
        resp = make_response(req, 200, "OK")
        resp.add("Contact", self.contact)
        resp.add("Content-Type", "application/sdp")
        resp.body = build_offer(
            self.local_ip, self.media.local_port, session_id=self._sdp_session_id, version=self._sdp_version,
            payloads=(self.media.codec_pt,), dtmf_pt=self.media.dtmf_pt or 101,
        ).encode()
        self.endpoint.send(resp, addr)

    # --- media callbacks ---------------------------------------------------------------------
    def on_media_dtmf(self, digit: str, duration_ms: int, method: str) -> None:
        if self.ended is None:
            self._emit(DtmfReceived(digit, duration_ms, method))

    def on_media_timeout(self) -> None:
        if self.ended is None and self.state == "confirmed":
            log.warning("sip.media_timeout", call_id=self.call_id, timeout_s=self.media.media_timeout_s)
            self._send_bye()
            self.state = "ended"
            self._end(Ended("failed", "media timeout", None, "system"))

    # --- CallSession -------------------------------------------------------------------------
    async def play(self, pcm: bytes) -> bool:
        """Send audio to the callee in real time; True if played to the end, False if stopped."""
        if self.ended is not None or self.state != "confirmed":
            return False
        return await self.media.play(pcm)

    def stop_playback(self) -> None:
        """Barge-in: stop the audio being played now (play() returns False)."""
        self.media.stop_playback()

    async def send_dtmf(self, digits: str) -> None:
        """Send DTMF digits (RFC 4733 if the far end offered telephone-event, else in-band)."""
        if self.ended is None and self.state == "confirmed":
            await self.media.send_dtmf(digits)

    def on_audio(self, callback: Callable[[bytes], None] | None) -> None:
        """Deliver the callee's audio, one 20 ms frame per call of ``callback``."""
        self.media.on_audio(callback)

    def start_recording(self) -> None:
        """Start keeping both directions of audio, time-aligned."""
        self.media.start_recording()

    def stop_recording(self) -> tuple[bytes, bytes]:
        """Stop and return (callee_pcm, our_pcm), equal length, aligned in time."""
        return self.media.stop_recording()

    async def hangup(self) -> None:
        """End the call from our side: BYE after answer, CANCEL before (status canceled)."""
        if self.ended is None:
            if self.state == "confirmed":
                self._send_bye()
                self.state = "ended"
                self._end(Ended("completed", "", None, "caller"))
            elif self.state in ("calling", "early") and self._cancel_reason is None:
                self._cancel_ring_timer()
                self._cancel("hangup")
            elif self.state == "init":
                self._end(Ended("canceled", "", None, "caller"))
        await self._ended_evt.wait()

    async def wait_ended(self) -> Ended:
        await self._ended_evt.wait()
        assert self.ended is not None
        return self.ended

    # --- lifecycle ---------------------------------------------------------------------------
    def _emit(self, event: CarrierEvent) -> None:
        self.events.put_nowait(event)

    def _end(self, ended: Ended) -> None:
        if self.ended is not None:
            return
        self.ended = ended
        self._cancel_ring_timer()
        if self._guard_timer is not None:
            self._guard_timer.cancel()
        self.media.close()
        self._emit(ended)
        self._ended_evt.set()
        log.info("sip.ended", call_id=self.call_id, status=ended.status, code=ended.sip_code,
                 hangup_by=ended.hangup_by, reason=ended.reason)
        self._maybe_finished()

    def _maybe_finished(self) -> None:
        # The call stays routable until its transactions are done, so a late 200 OK
        # can still be ACKed and BYEd after the Ended event.
        if self.ended is not None and not self._open_tx:
            self._on_finished(self)

    def abort(self) -> None:
        """Carrier shutdown: stop everything now."""
        for tx in list(self._open_tx):
            tx.abort()
        self._open_tx.clear()
        if self.ended is None:
            self._end(Ended("failed", "carrier closed", None, "system"))
