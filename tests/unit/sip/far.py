"""A far end for the SIP call core (services/telephony/sip/core.py), without sockets or an
event loop: it reads what the core sends, answers with SIP messages built from those
requests, and moves a virtual clock that fires the timers the core armed."""

from __future__ import annotations

import re

from services.telephony.carrier import (
    Answered,
    DialRequest,
    DtmfReceived,
    Ended,
    Ringing,
    TransferProgress,
    TrunkConfig,
)
from services.telephony.sip.core import CallCore
from services.telephony.sip.message import SipMessage, make_response, parse_message
from services.telephony.sip.policy import TrunkPolicy
from services.telephony.sip.sdp import PCMA, build_offer
from services.telephony.sip.transaction import ArmTimer, CancelTimer, Send, Timers

TRUNK = ("192.0.2.10", 5060)
SBC = ("192.0.2.20", 5070)
FAR = ("192.0.2.30", 5080)  # where the callee's in-dialog requests come from
T = Timers()  # RFC 3261 values: T1 0.5 s, T2 4 s, T4 5 s
ANSWER_SDP = build_offer("192.0.2.99", 30000, session_id=9, payloads=(PCMA,)).encode()
CHALLENGE = 'Digest realm="canary.test", nonce="abc123", qop="auth", algorithm=MD5'
# These tests are about dialog mechanics through an SBC and a callee off the trunk's
# address: their trunk allows that. The strict default is tests/security/test_sip_digest_and_route.py's.
ROUTED = TrunkPolicy(allow_foreign_hops=True)


class Far:
    """Drives one CallCore: records its outputs, keeps its armed timers on a virtual clock."""

    def __init__(self, *, timeout_s: float = 30.0, trunk: TrunkConfig | None = None,
                 policy: TrunkPolicy = ROUTED) -> None:
        trunk = trunk or TrunkConfig(*TRUNK)
        self.core = CallCore(
            DialRequest("c1", "+15550100", "+15550199", timeout_s=timeout_s, trunk=trunk), trunk,
            local_ip="192.0.2.1", sip_port=5062, media_port=40000, timers=T, sdp_session_id=7, policy=policy,
        )
        self.now = 0.0
        self.timers: dict = {}
        self.sent: list[tuple[float, SipMessage, tuple[str, int]]] = []
        self.events: list = []  # everything but Send and timers, in order

    def feed(self, outputs) -> list:
        for out in outputs:
            if isinstance(out, Send):
                # what goes on the wire: re-parse it as the far end would
                self.sent.append((self.now, parse_message(out.msg.encode()), out.addr))
            elif isinstance(out, ArmTimer):
                assert out.at >= self.now
                self.timers[out.id] = out.at
            elif isinstance(out, CancelTimer):
                assert out.id in self.timers, f"cancel of a timer never armed: {out.id}"
                del self.timers[out.id]
            else:
                self.events.append(out)
        return outputs

    def advance(self, dt: float) -> None:
        end = self.now + dt
        while self.timers:
            tid, at = min(self.timers.items(), key=lambda kv: kv[1])
            if at > end:
                break
            del self.timers[tid]
            self.now = at
            self.feed(self.core.on_timer(tid, self.now))
        self.now = end

    # --- the far end's messages ------------------------------------------------------
    def respond(self, req: SipMessage, code: int, reason: str = "X", *, tag: str | None = "uas",
                body: bytes = b"", headers: tuple[tuple[str, str], ...] = (),
                src: tuple[str, int] = TRUNK) -> list:
        """The far end's response to ``req``, arriving from ``src`` (the trunk by default)."""
        resp = make_response(req, code, reason, to_tag=tag if code > 100 else None)
        for k, v in headers:
            resp.add(k, v)
        if body:
            resp.add("Content-Type", "application/sdp")
            resp.body = body
        return self.feed(self.core.on_message(parse_message(resp.encode()), self.now, src))

    def request(self, method: str, cseq: int = 1, *, body: bytes = b"", ctype: str = "",
                headers: tuple[tuple[str, str], ...] = ()) -> SipMessage:
        """An in-dialog request from the callee (From/To swapped), fed to the core."""
        inv = self.first("INVITE")
        msg = SipMessage(method=method, uri="sip:canary@192.0.2.1:5062")
        msg.add("Via", f"SIP/2.0/UDP {FAR[0]}:{FAR[1]};branch=z9hG4bKfar{method}{cseq}")
        msg.add("From", (inv.get("To") or "") + ";tag=uas")
        msg.add("To", inv.get("From") or "")
        msg.add("Call-ID", inv.call_id)
        msg.add("CSeq", f"{cseq} {method}")
        for k, v in headers:
            msg.add(k, v)
        if ctype:
            msg.add("Content-Type", ctype)
        msg.body = body
        self.feed(self.core.on_message(parse_message(msg.encode()), self.now, FAR))
        return msg

    # --- what the core sent ----------------------------------------------------------
    def of(self, method: str) -> list[tuple[float, SipMessage, tuple[str, int]]]:
        return [s for s in self.sent if s[1].method == method]

    def first(self, method: str) -> SipMessage:
        return self.of(method)[0][1]

    def last(self, method: str) -> SipMessage:
        return self.of(method)[-1][1]

    def responses(self) -> list[tuple[SipMessage, tuple[str, int]]]:
        return [(m, a) for _, m, a in self.sent if not m.is_request]

    def carrier_events(self) -> list:
        return [e for e in self.events if isinstance(e, (Ringing, Answered, DtmfReceived, TransferProgress, Ended))]

    def transfer(self) -> list[TransferProgress]:
        return [e for e in self.events if isinstance(e, TransferProgress)]

    def ended(self) -> list[Ended]:
        return [e for e in self.events if isinstance(e, Ended)]


def auth_params(value: str) -> dict[str, str]:
    return {k: a or b for k, a, b in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', value)}


def started(**kw) -> Far:
    far = Far(**kw)
    far.feed(far.core.invite(far.now))
    return far


def answered(**kw) -> Far:
    far = started(**kw)
    inv = far.first("INVITE")
    far.respond(inv, 100, "Trying")
    far.respond(inv, 180, "Ringing")
    far.respond(inv, 200, "OK", body=ANSWER_SDP, headers=(
        ("Contact", "<sip:callee@192.0.2.30:5080>"),
        ("Record-Route", f"<sip:{SBC[0]}:{SBC[1]};lr>"),
        ("Record-Route", "<sip:192.0.2.21;lr>"),
    ))
    return far
