"""SipCarrier: the Carrier contract over SIP (UDP, TCP or TLS, per trunk) + RTP (live keys, SIP trunks)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from typing import Awaitable, Callable

import structlog

from services.lib.inbound import RING_TIMEOUT_S, Accept, NumberRoute, Reject, dialed_number
from services.telephony.carrier import DialRequest, TrunkConfig

from .call import SipCall
from .locate import DEFAULT_PORTS, Target
from .media import MediaClock, MediaSession, bind_rtp_pair
from .message import SipMessage, make_response, new_tag
from .policy import TrunkPolicy, is_ip
from .stream import SipStreamEndpoint, tls_context, tls_server_context
from .transaction import Timers
from .transport import SipEndpoint
from .uas import InboundCore

RECENT_INVITES = 1024  # incoming INVITEs whose final response is kept for retransmissions


def uri_user(uri: str) -> str:
    """The user part of a SIP URI (``sip:+1555@host`` -> ``+1555``); empty when it has none."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    return rest.split("@", 1)[0] if "@" in rest else ""

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
        router: Callable[[str, str | None], Awaitable[Accept | Reject]] | None = None,
        on_incoming: Callable[[SipCall, NumberRoute, dict], None] | None = None,
        mint_call_id: Callable[[], str] | None = None,
        tls_ca_file: str | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
        media_lead_s: float = 0.0,
        media_priority: str = "normal",
    ) -> None:
        self.default_trunk = default_trunk
        self.tls_ca_file = tls_ca_file
        # Our own certificate: a TLS listener, so trunks can open TLS to us (calls in).
        self.tls_server = (tls_cert_file, tls_key_file or tls_cert_file) if tls_cert_file else None
        self.trunk_policy = trunk_policy
        self.local_ip = local_ip
        self.sip_port = sip_port
        self.rtp_port_range = rtp_port_range
        self.media_timeout_s = media_timeout_s
        self.rtcp_interval_s = rtcp_interval_s
        self.timers = timers or Timers()
        # media_lead_s > 0: each tick's RTP leaves from the pacer thread at its deadline (pacer.py)
        self.clock = MediaClock(lead_s=media_lead_s, priority=media_priority)
        self.endpoint: SipEndpoint | None = None
        self.streams: dict[str, SipStreamEndpoint] = {}  # "tcp", "tls": at start when calls come in, else on first use
        self._calls: dict[str, SipCall] = {}  # by SIP Call-ID
        # Incoming calls: ``router(source_ip, number)`` decides, ``on_incoming`` gets each taken call.
        self.router, self.on_incoming = router, on_incoming
        # The id of an incoming call: the gateway picks one its answer instruction comes back to.
        self.mint_call_id = mint_call_id
        self._routing: set[str] = set()  # Call-IDs of INVITEs being routed
        self._recent: dict[str, SipMessage] = {}  # final responses of recent incoming INVITEs, by Call-ID
        self._tasks: set[asyncio.Task] = set()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Bind the SIP socket (dial() does this on first use)."""
        async with self._lock:
            if self.endpoint is None:
                bind_ip = self.local_ip or "0.0.0.0"
                self.endpoint = await SipEndpoint.create(
                    bind_ip, self.sip_port, on_request=self._on_request,
                    on_response=self._on_response, timers=self.timers, peer_filter=True,
                    open_to_invites=self.router is not None,
                )
                log.info("sip.listening", addr=f"{bind_ip}:{self.endpoint.local_addr[1]}")
        if self.router is not None:  # calls come in over TCP (and TLS, with a certificate of ours) too
            await self._stream("tcp")
            if self.tls_server is not None:
                await self._stream("tls")

    async def _stream(self, transport: str) -> SipStreamEndpoint:
        """The TCP or TLS endpoint, listening on the SIP port's number (or a free one with port 0)."""
        async with self._lock:
            ep = self.streams.get(transport)
            if ep is None:
                bind_ip = self.local_ip or "0.0.0.0"
                holder: list[SipStreamEndpoint] = []

                def on_request(req: SipMessage, addr: tuple[str, int]) -> None:
                    self._on_request(req, addr, holder[0])

                port = self.sip_port if self.sip_port == 0 or transport == "tcp" else self.sip_port + 1
                tls = transport == "tls"
                ep = await SipStreamEndpoint.create(
                    bind_ip, port, on_request=on_request, on_response=self._on_response, timers=self.timers,
                    peer_filter=True, transport_name=transport, ssl_context=tls_context(self.tls_ca_file) if tls else None,
                    server_ssl=tls_server_context(*self.tls_server) if tls and self.tls_server else None,
                    listen=not tls or self.tls_server is not None,
                    open_to_invites=self.router is not None,
                    on_transport_error=lambda addr, why: self._transport_failed(transport, addr, why))
                holder.append(ep)
                self.streams[transport] = ep
                if ep.listening:
                    log.info("sip.listening", transport=transport, addr=f"{bind_ip}:{ep.local_addr[1]}")
            return ep

    def _transport_failed(self, transport: str, addr: tuple[str, int], reason: str) -> None:
        """Fail at once the calls whose SIP went over a connection that could not be made or broke."""
        for call in list(self._calls.values()):
            if call.core.transport == transport and call.core.dest == addr:
                call.transport_failed(reason)

    @property
    def sip_addr(self) -> tuple[str, int]:
        assert self.endpoint is not None
        return self.endpoint.local_addr

    async def dial(self, request: DialRequest) -> SipCall:
        """Send the INVITE; progress arrives on the returned call's ``events`` queue."""
        trunk = request.trunk or self.default_trunk
        if trunk is None:
            raise ValueError("no SIP trunk configured for this call")
        transport = (trunk.transport or "udp").lower()
        await self.start()
        assert self.endpoint is not None
        endpoint: SipEndpoint = self.endpoint if transport == "udp" else await self._stream(transport)
        port = trunk.port or DEFAULT_PORTS.get(transport, 5060)
        if trunk.address is None and not trunk.targets and not is_ip(trunk.host):
            # An operator's default trunk by name: resolved once, here, so the call's
            # SIP (and the addresses it accepts) stay on one address.
            infos = await asyncio.get_running_loop().getaddrinfo(
                trunk.host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM)
            trunk = dataclasses.replace(trunk, address=infos[0][4][0])
        targets = trunk.targets or (Target(trunk.address or trunk.host, port, trunk.host),)
        policy = self.trunk_policy(trunk) if callable(self.trunk_policy) else self.trunk_policy
        local_ip = self.local_ip or route_ip(targets[0].address, targets[0].port)
        if isinstance(endpoint, SipStreamEndpoint):
            for t in targets:  # the trunk's domain, not the SRV target: RFC 5922
                endpoint.expect_name((t.address, t.port), trunk.host)
        media, bind = await self._media(request.call_id, local_ip)
        call = bind(SipCall(request, trunk, endpoint, media, local_ip, on_finished=self._finished, policy=policy))
        self._calls[call.sip_call_id] = call
        call.start()
        return call

    async def _media(self, call_id: str, local_ip: str) -> tuple[MediaSession, Callable[[SipCall], SipCall]]:
        """A call's RTP/RTCP session, and the function that hands its callbacks to the call made with it."""
        rtp, rtcp = await bind_rtp_pair(local_ip, self.rtp_port_range)
        holder: list[SipCall] = []

        def on_dtmf(digit: str, dur: int, method: str) -> None:
            if holder:
                holder[0].on_media_dtmf(digit, dur, method)

        def on_timeout() -> None:
            if holder:
                holder[0].on_media_timeout()

        media = MediaSession(
            call_id, self.clock, rtp, rtcp, on_dtmf=on_dtmf, on_media_timeout=on_timeout,
            media_timeout_s=self.media_timeout_s, rtcp_interval_s=self.rtcp_interval_s,
        )

        def bind(call: SipCall) -> SipCall:
            holder.append(call)
            return call

        return media, bind

    def _finished(self, call: SipCall) -> None:
        self._calls.pop(call.sip_call_id, None)
        final = getattr(call.core, "final_response", None)
        if final is not None:
            self._remember(call.sip_call_id, final)

    def _remember(self, sip_call_id: str, final: SipMessage) -> None:
        """An incoming INVITE's final response, for its late retransmissions (never a second call)."""
        self._recent[sip_call_id] = final
        while len(self._recent) > RECENT_INVITES:
            self._recent.pop(next(iter(self._recent)))

    # --- incoming calls ------------------------------------------------------------------------
    def _incoming(self, req: SipMessage, addr: tuple[str, int], endpoint: SipEndpoint) -> None:
        """An INVITE outside any call, on ``endpoint`` (UDP, or the TCP/TLS one it came over: the
        call's SIP stays on it): routed (cheaply, from the router's cache) in a task of its own."""
        final = self._recent.get(req.call_id)
        if final is not None:
            endpoint.send(final, addr)
            return
        if req.call_id in self._routing:
            return  # a retransmission while the first copy is being routed
        self._routing.add(req.call_id)
        task = asyncio.get_running_loop().create_task(self._route(req, addr, endpoint))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _route(self, req: SipMessage, addr: tuple[str, int], endpoint: SipEndpoint) -> None:
        assert self.router is not None
        try:
            number = dialed_number(uri_user(req.uri or ""))
            decision = await self.router(addr[0], number)
            if isinstance(decision, Reject):
                resp = make_response(req, decision.code, decision.reason, to_tag=new_tag())
                self._remember(req.call_id, resp)
                endpoint.send(resp, addr)
                log.info("sip.inbound_refused", code=decision.code, peer=addr[0], to=number)
                return
            await self._take(req, addr, decision.route, decision.srtp, endpoint)
        except Exception:  # noqa: BLE001 - one bad INVITE must not stop the carrier
            log.exception("sip.inbound_failed", peer=addr[0])
            endpoint.send(make_response(req, 500, "Server Internal Error", to_tag=new_tag()), addr)
        finally:
            self._routing.discard(req.call_id)

    async def _take(self, req: SipMessage, addr: tuple[str, int], route: NumberRoute, srtp: str,
                    endpoint: SipEndpoint) -> None:
        assert self.on_incoming is not None
        from services.common.accounts import new_id

        caller = uri_user(req.from_.uri)
        call_id = self.mint_call_id() if self.mint_call_id is not None else new_id("call")
        dial = DialRequest(call_id=call_id, to=route.number, from_=dialed_number(caller) or caller or "anonymous",
                           timeout_s=RING_TIMEOUT_S, account_id=route.account_id)
        local_ip = self.local_ip or route_ip(*addr)
        media, bind = await self._media(dial.call_id, local_ip)
        core = InboundCore(req, addr, dial, local_ip=local_ip, sip_port=endpoint.local_addr[1],
                           media_port=media.local_port, timers=self.timers, srtp=srtp,
                           transport=getattr(endpoint, "transport_name", "udp"))
        call = bind(SipCall(dial, core.trunk, endpoint, media, local_ip, on_finished=self._finished, core=core))
        self._calls[call.sip_call_id] = call
        call.receive()
        if call.ended is None:
            self.on_incoming(call, route, {"call_id": req.call_id, "source": addr[0]})

    def _on_request(self, req: SipMessage, addr: tuple[str, int], via: SipEndpoint | None = None) -> None:
        """A request from ``addr``, on the UDP endpoint or ``via`` a TCP/TLS one (answered on it)."""
        endpoint = via or self.endpoint
        assert endpoint is not None
        call = self._calls.get(req.call_id)
        if call is not None:
            call.handle_request(req, addr)
        elif req.method == "OPTIONS":
            endpoint.send(make_response(req, 200, "OK"), addr)  # trunk keep-alive pings
        elif req.method == "INVITE" and self.router is not None:
            self._incoming(req, addr, endpoint)
        elif req.method == "INVITE":  # incoming calls are off (CANARY_SIP_INBOUND)
            endpoint.send(make_response(req, 403, "Inbound Calls Not Supported", to_tag="canary"), addr)
        elif req.method != "ACK":
            endpoint.send(make_response(req, 481, "Call/Transaction Does Not Exist"), addr)

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
        for task in list(self._tasks):
            task.cancel()
        await self.clock.close()
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
        for ep in self.streams.values():
            ep.close()
        self.streams.clear()
