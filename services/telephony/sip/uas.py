"""The UAS side of one incoming SIP call, as a pure state machine (like ``core.py``'s UAC).

An INVITE from a trunk to one of its account's numbers becomes an :class:`InboundCore`:
``receive`` answers 100 Trying and checks the SDP offer; ``answer`` (once the orchestrator
says so) sends 180 Ringing and the 200 OK with our SDP answer, retransmitted on Timer G
until the ACK confirms the dialog (Timer H gives up: BYE, failed). A CANCEL before then
ends the call ``canceled`` (200 to the CANCEL, 487 to the INVITE); a BYE from the caller
ends it ``completed`` with ``hangup_by: caller``; our hangup is a BYE after the answer,
a 480 before it. In-dialog requests we send (BYE) and the in-dialog requests we take
(OPTIONS, INFO digits, re-INVITE), media and lifecycle are the UAC core's: the dialog is
the same once its two ends are named the other way round (RFC 3261 12.1.1).
"""

from __future__ import annotations

import re

import structlog

from services.telephony.carrier import Answered, DialRequest, Ended, Ringing, TrunkConfig

from .core import ALLOW, CallCore, SetRemoteMedia, StartMedia
from .message import SipMessage, make_response, parse_name_addr
from .sdp import SdpAnswer, SdpError, build_answer, parse_sdp
from .srtp import Crypto, keys_of_offer
from .transaction import Send, TimerId, Timers

log = structlog.get_logger(__name__)

TIMER_G = TimerId("uas_G")  # 200 OK retransmission: T1, doubling up to T2 (RFC 3261 13.3.1.4)
TIMER_H = TimerId("uas_H")  # 64*T1 without the ACK: the dialog is torn down
_TAG = re.compile(r";\s*tag=[^;]*", re.IGNORECASE)


def offer_of(invite: SipMessage) -> SdpAnswer:
    """The INVITE's SDP offer and the codec we would answer with; SdpError when it has none we take."""
    offer = parse_sdp(invite.body.decode("utf-8", "replace"))
    offer.codec  # noqa: B018 - raises SdpError when neither PCMU nor PCMA is offered
    return offer


class InboundCore(CallCore):
    """One incoming call leg: INVITE server transaction + the dialog it creates. Pure."""

    def __init__(self, invite: SipMessage, source: tuple[str, int], request: DialRequest, *, local_ip: str,
                 sip_port: int, media_port: int, timers: Timers | None = None, user_agent: str = "canary-voice",
                 sdp_session_id: int | None = None, srtp: str = "off", transport: str = "udp") -> None:
        # The "trunk" of the dialog is where the INVITE came from: every request and response
        # of the call goes there, and only there (over TCP/TLS: on the connection it came on).
        # ``srtp``: the mode of the trunk it came from.
        peer = TrunkConfig(host=source[0], port=source[1], address=source[0], srtp=srtp, transport=transport)
        super().__init__(request, peer, local_ip=local_ip, sip_port=sip_port, media_port=media_port, timers=timers,
                         user_agent=user_agent, sdp_session_id=sdp_session_id)
        self.invite = invite
        self.sip_call_id = invite.call_id
        # Our requests go From our end (the INVITE's To, with our tag) To the caller (its From).
        self.from_hdr = f"{_TAG.sub('', invite.get('To') or '')};tag={self.local_tag}"
        self.to_hdr = _TAG.sub("", invite.get("From") or "")
        self.remote_tag = invite.from_.tag
        contacts = invite.get_all("Contact")
        self.remote_target = parse_name_addr(contacts[0]).uri if contacts else invite.from_.uri
        self.request_uri = self.remote_target
        self.route_set = list(invite.get_all("Record-Route"))  # UAS: in order (RFC 3261 12.1.1)
        self.offer: SdpAnswer | None = None
        self._crypto: Crypto | None = None  # our a=crypto line in the answer (SRTP offered and taken)
        self._last: SipMessage | None = None  # the INVITE's latest response, resent on its retransmissions
        self._g_interval = self.timers.t1

    @property
    def final_response(self) -> SipMessage | None:
        """The INVITE's final response, once sent (the carrier resends it to a late retransmission)."""
        return self._last if self._last is not None and (self._last.status or 0) >= 200 else None

    # --- inputs ----------------------------------------------------------------------------
    def receive(self, now: float) -> list:
        """The INVITE was routed to a number: 100 Trying, or 488 when its offer has no codec we take
        or its SRTP does not fit the trunk's mode (``srtp.keys_of_offer``)."""
        if self.state != "init":
            return []
        try:
            self.offer = offer_of(self.invite)
            found = keys_of_offer(self.srtp_mode, self.offer)
            if found is not None:
                self._crypto, self.srtp_keys = found
        except (SdpError, ValueError) as exc:  # CryptoError too
            log.info("sip.inbound_offer_refused", call_id=self.call_id, error=str(exc))
            self._respond(488, "Not Acceptable Here")
            self._end(Ended("failed", f"no usable SDP offer: {exc}", 488, "system"))
            return self._flush()
        self.state = "proceeding"
        self._respond(100, "Trying")
        return self._flush()

    def answer(self, now: float) -> list:
        """180 Ringing, then the 200 OK with our SDP answer (media starts; the ACK confirms)."""
        if self.state != "proceeding" or self.ended is not None or self.offer is None:
            return self._flush()
        self._respond(180, "Ringing")
        self._out.append(Ringing())
        self._sdp_version = 1
        ok = self._response(200, "OK")
        ok.add("Contact", self.contact)
        ok.add("Allow", ALLOW)
        ok.add("Content-Type", "application/sdp")
        ok.body = build_answer(self.offer, self.local_ip, self.media_port, session_id=self._sdp_session_id,
                               crypto=self._crypto).encode()
        self._send_response(ok)
        self.codec_pt, self.dtmf_pt = self.offer.codec, self.offer.dtmf_pt
        self._out.append(SetRemoteMedia(self.offer.ip, self.offer.port, self.codec_pt, self.offer.codec_name,
                                        self.dtmf_pt, self.srtp_keys))
        self._out.append(StartMedia(send=True))
        self.state = "answering"
        self._g_interval = self.timers.t1
        self._arm(TIMER_G, now + self._g_interval)
        self._arm(TIMER_H, now + 64 * self.timers.t1)
        log.info("sip.inbound_answered", call_id=self.call_id, codec=self.codec_pt, dtmf_pt=self.dtmf_pt,
                 srtp=self.srtp_keys.suite if self.srtp_keys else None)
        return self._flush()

    def hangup(self, now: float) -> list:
        """End the call from our side: BYE once answered, 480 before."""
        if self.ended is None:
            if self.state in ("answering", "confirmed"):
                self._disarm(TIMER_G)
                self._disarm(TIMER_H)
                self.state = "confirmed"
                self._send_bye(now)
                self._end(Ended("completed", "hung up by callee", None, "callee"))
            else:
                self._respond(480, "Temporarily Unavailable")
                self._end(Ended("canceled", "ended before answer", 480, "callee"))
        return self._flush()

    def on_timer(self, timer_id: TimerId, now: float) -> list:
        if timer_id == TIMER_G and timer_id in self._armed:
            self._armed.discard(timer_id)
            if self.state == "answering" and self._last is not None:
                self._out.append(Send(self._last, self.dest))
                self._g_interval = min(2 * self._g_interval, self.timers.t2)
                self._arm(TIMER_G, now + self._g_interval)
            return self._flush()
        if timer_id == TIMER_H and timer_id in self._armed:
            self._armed.discard(timer_id)
            if self.state == "answering" and self.ended is None:
                self._disarm(TIMER_G)
                self.state = "confirmed"  # a BYE ends what the caller may think is up
                self._send_bye(now)
                self._end(Ended("failed", "no ACK for our 200 OK", None, "system"))
            return self._flush()
        return super().on_timer(timer_id, now)

    # --- incoming requests ----------------------------------------------------------------------
    def _on_request(self, req: SipMessage, addr: tuple[str, int]) -> None:
        method = req.method
        if method == "INVITE" and self._is_our_invite(req):
            if self._last is not None:
                self._out.append(Send(self._last, addr))  # a retransmission: the same answer again
            return
        if method == "ACK":
            if self.state == "answering" and req.cseq[0] == self.invite.cseq[0]:
                self._disarm(TIMER_G)
                self._disarm(TIMER_H)
                self.state = "confirmed"
                self._out.append(Answered())
            return
        if method == "CANCEL":
            self._out.append(Send(make_response(req, 200, "OK", to_tag=self.local_tag), addr))
            if self.state == "proceeding" and self.ended is None:
                self._respond(487, "Request Terminated")
                log.info("sip.inbound_canceled", call_id=self.call_id)
                self._end(Ended("canceled", "caller canceled", 487, "caller"))
            return
        if method == "BYE":
            self._out.append(Send(make_response(req, 200, "OK"), addr))
            if self.ended is None:
                self._disarm(TIMER_G)
                self._disarm(TIMER_H)
                log.info("sip.bye_received", call_id=self.call_id)
                self._end(Ended("completed", "caller hung up", None, "caller"))
            return
        super()._on_request(req, addr)

    def _is_our_invite(self, req: SipMessage) -> bool:
        try:
            return req.top_via.branch == self.invite.top_via.branch and req.cseq == self.invite.cseq
        except ValueError:
            return False

    # --- responses to the INVITE ----------------------------------------------------------------
    def _response(self, code: int, reason: str) -> SipMessage:
        resp = make_response(self.invite, code, reason, to_tag=None if code == 100 else self.local_tag)
        for rr in self.invite.get_all("Record-Route"):
            if 100 < code < 300:
                resp.add("Record-Route", rr)
        return resp

    def _respond(self, code: int, reason: str) -> None:
        self._send_response(self._response(code, reason))

    def _send_response(self, resp: SipMessage) -> None:
        self._last = resp
        self._out.append(Send(resp, self.dest))
