"""SipCarrier: the Carrier contract over SIP/UDP + RTP (live keys, SIP trunks)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from typing import Callable

import structlog

from services.telephony.carrier import DialRequest, TrunkConfig

from .call import SipCall
from .media import MediaClock, MediaSession, bind_rtp_pair
from .message import SipMessage, make_response
from .policy import TrunkPolicy, is_ip
from .transaction import Timers
from .transport import SipEndpoint

log = structlog.get_logger(__name__)


def route_ip(host: str, port: int) -> str:
    """The local address the OS would use to reach ``host`` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, port))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


class SipCarrier:
    """Places calls through a SIP trunk. One SIP UDP socket for all calls; one RTP/RTCP
    port pair per call; one shared 20 ms media clock.

    ``local_ip``: the address put in Via/Contact/SDP (default: the route to the trunk).
    ``media_timeout_s``: no RTP for this long after answer ends the call (failed).
    ``trunk_policy``: what a trunk's calls accept (digest realm and legacy digest, hops
    off the trunk), one for all or per trunk; default strict (``policy.STRICT``).

    The SIP socket accepts datagrams only from the addresses of live calls and
    transactions (their trunks, and the hops a policy allows): see ``transport.py``.
    """

    name = "sip"

    def __init__(
        self,
        default_trunk: TrunkConfig | None = None,
        *,
        local_ip: str | None = None,
        sip_port: int = 0,
        rtp_port_range: tuple[int, int] | None = None,
        media_timeout_s: float = 30.0,
        rtcp_interval_s: float = 5.0,
        timers: Timers | None = None,
        trunk_policy: TrunkPolicy | Callable[[TrunkConfig], TrunkPolicy] | None = None,
    ) -> None:
        self.default_trunk = default_trunk
        self.trunk_policy = trunk_policy
        self.local_ip = local_ip
        self.sip_port = sip_port
        self.rtp_port_range = rtp_port_range
        self.media_timeout_s = media_timeout_s
        self.rtcp_interval_s = rtcp_interval_s
        self.timers = timers or Timers()
        self.clock = MediaClock()
        self.endpoint: SipEndpoint | None = None
        self._calls: dict[str, SipCall] = {}  # by SIP Call-ID
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Bind the SIP socket (dial() does this on first use)."""
        async with self._lock:
            if self.endpoint is None:
                bind_ip = self.local_ip or "0.0.0.0"
                self.endpoint = await SipEndpoint.create(
                    bind_ip, self.sip_port, on_request=self._on_request,
                    on_response=self._on_response, timers=self.timers, peer_filter=True,
                )
                log.info("sip.listening", addr=f"{bind_ip}:{self.endpoint.local_addr[1]}")

    @property
    def sip_addr(self) -> tuple[str, int]:
        assert self.endpoint is not None
        return self.endpoint.local_addr

    async def dial(self, request: DialRequest) -> SipCall:
        """Send the INVITE; progress arrives on the returned call's ``events`` queue."""
        trunk = request.trunk or self.default_trunk
        if trunk is None:
            raise ValueError("no SIP trunk configured for this call")
        await self.start()
        assert self.endpoint is not None
        if trunk.address is None and not is_ip(trunk.host):
            # An operator's default trunk by name: resolved once, here, so the call's
            # SIP (and the addresses it accepts) stay on one address.
            infos = await asyncio.get_running_loop().getaddrinfo(
                trunk.host, trunk.port, family=socket.AF_INET, type=socket.SOCK_DGRAM)
            trunk = dataclasses.replace(trunk, address=infos[0][4][0])
        policy = self.trunk_policy(trunk) if callable(self.trunk_policy) else self.trunk_policy
        local_ip = self.local_ip or route_ip(trunk.address or trunk.host, trunk.port)
        rtp, rtcp = await bind_rtp_pair(local_ip, self.rtp_port_range)
        call: SipCall | None = None

        def on_dtmf(digit: str, dur: int, method: str) -> None:
            if call is not None:
                call.on_media_dtmf(digit, dur, method)

        def on_timeout() -> None:
            if call is not None:
                call.on_media_timeout()

        media = MediaSession(
            request.call_id, self.clock, rtp, rtcp, on_dtmf=on_dtmf, on_media_timeout=on_timeout,
            media_timeout_s=self.media_timeout_s, rtcp_interval_s=self.rtcp_interval_s,
        )
        call = SipCall(request, trunk, self.endpoint, media, local_ip, on_finished=self._finished, policy=policy)
        self._calls[call.sip_call_id] = call
        call.start()
        return call

    def _finished(self, call: SipCall) -> None:
        self._calls.pop(call.sip_call_id, None)

    def _on_request(self, req: SipMessage, addr: tuple[str, int]) -> None:
        assert self.endpoint is not None
        call = self._calls.get(req.call_id)
        if call is not None:
            call.handle_request(req, addr)
        elif req.method == "OPTIONS":
            self.endpoint.send(make_response(req, 200, "OK"), addr)  # trunk keep-alive pings
        elif req.method == "INVITE":
            # Inbound calls are not part of this carrier (outbound API only).
            self.endpoint.send(make_response(req, 403, "Inbound Calls Not Supported", to_tag="canary"), addr)
        elif req.method != "ACK":
            self.endpoint.send(make_response(req, 481, "Call/Transaction Does Not Exist"), addr)

    def _on_response(self, resp: SipMessage, addr: tuple[str, int]) -> None:
        # A call's transactions live in its core: route by Call-ID, the core matches
        # branch and method (and ACKs a 2xx retransmission after its INVITE ended).
        call = self._calls.get(resp.call_id)
        if call is not None:
            call.handle_response(resp, addr)
        else:
            log.debug("sip.stray_response", first_line=resp.first_line(), peer=f"{addr[0]}:{addr[1]}")

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    async def close(self) -> None:
        """Hang up what is still up (best effort), then release sockets and tasks."""
        for call in list(self._calls.values()):
            if call.ended is None:
                try:
                    await asyncio.wait_for(call.hangup(), 2.0)
                except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                    pass
            call.abort()
        self._calls.clear()
        await self.clock.close()
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
