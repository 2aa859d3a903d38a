"""One SIP call leg as a CallSession: the asyncio shell around a :class:`CallCore`.

The core (``core.py``) decides everything; this shell feeds it what arrives (messages
routed here by Call-ID, timer ticks, media callbacks, the user's hangup) with the loop's
time, and carries out what it returns: datagrams through the endpoint, loop timers,
MediaSession calls, carrier events on ``events``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Callable

import structlog

from services.telephony.carrier import (
    Answered,
    CarrierEvent,
    DialRequest,
    DtmfReceived,
    Ended,
    Ringing,
    TransferProgress,
    event_queue,
    offer,
    TrunkConfig,
)

from .core import ALLOW, CallCore, CloseMedia, Finished, Output, SetRemoteMedia, StartMedia, sip_uri
from .media import MediaSession
from .message import SipMessage
from .policy import TrunkPolicy
from .transaction import ArmTimer, CancelTimer, Send, TimerId

if TYPE_CHECKING:
    from .transport import SipEndpoint

log = structlog.get_logger(__name__)

__all__ = ["ALLOW", "SipCall", "sip_uri"]


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
        policy: TrunkPolicy | None = None,
        core: CallCore | None = None,
    ) -> None:
        self.call_id = request.call_id
        self.events: asyncio.Queue[CarrierEvent] = event_queue()  # bounded: offer() keeps the end
        self.request = request
        self.trunk = trunk
        self.endpoint = endpoint
        self.media = media
        self.local_ip = local_ip
        # An incoming call brings its own core (sip/uas.py); the shell is the same both ways.
        self.core = core or CallCore(
            request, trunk, local_ip=local_ip, sip_port=endpoint.local_addr[1], media_port=media.local_port,
            timers=endpoint.timers, user_agent=user_agent, policy=policy,
        )
        self.sip_call_id = self.core.sip_call_id
        self._on_finished = on_finished
        self._timers: dict[TimerId, asyncio.TimerHandle] = {}
        self._ended_evt = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._peers: set[str] = set()  # the addresses this call told the endpoint to accept
        self.refer_to: str | None = None  # the last transfer's Refer-To URI

    @property
    def state(self) -> str:
        return self.core.state

    @property
    def ended(self) -> Ended | None:
        return self.core.ended

    # --- inputs to the core ------------------------------------------------------------
    def start(self) -> None:
        """Send the INVITE and arm the ring timeout."""
        self._run(self.core.invite(self._loop.time()))

    def handle_request(self, req: SipMessage, addr: tuple[str, int]) -> None:
        """An in-dialog request routed here by Call-ID."""
        self._run(self.core.on_message(req, self._loop.time(), addr))

    def handle_response(self, resp: SipMessage, addr: tuple[str, int]) -> None:
        """A response routed here by Call-ID, from ``addr``."""
        self._run(self.core.on_message(resp, self._loop.time(), addr))

    def _fire(self, timer_id: TimerId) -> None:
        self._timers.pop(timer_id, None)
        self._run(self.core.on_timer(timer_id, self._loop.time()))

    def on_media_dtmf(self, digit: str, duration_ms: int, method: str) -> None:
        self._run(self.core.media_dtmf(digit, duration_ms, method))

    def transport_failed(self, reason: str) -> None:
        """The TCP/TLS connection this call's SIP used could not be made or broke."""
        self._run(self.core.transport_failed(reason, self._loop.time()))

    def on_media_timeout(self) -> None:
        out = self.core.media_timeout(self._loop.time())
        if out:
            log.warning("sip.media_timeout", call_id=self.call_id, timeout_s=self.media.media_timeout_s)
        self._run(out)

    # --- carrying out the core's outputs -------------------------------------------------
    def _run(self, outputs: list[Output]) -> None:
        self._sync_peers(set() if self.core.finished else self.core.peer_ips)
        for out in outputs:
            match out:
                case Send(msg, addr):
                    self.endpoint.send(msg, addr)
                case ArmTimer(timer_id, at):
                    self._cancel_timer(timer_id)
                    self._timers[timer_id] = self._loop.call_at(at, self._fire, timer_id)
                case CancelTimer(timer_id):
                    self._cancel_timer(timer_id)
                case SetRemoteMedia(ip, port, codec_pt, codec_name, dtmf_pt, srtp):
                    self.media.set_remote(ip, port, codec_pt, codec_name, dtmf_pt, srtp=srtp)
                case StartMedia(send):
                    self.media.start(send=send)
                case CloseMedia():
                    self.media.close()
                case Ended():
                    offer(self.events, out, log)
                    self._ended_evt.set()
                case Ringing() | Answered() | DtmfReceived() | TransferProgress():
                    offer(self.events, out, log)
                case Finished():
                    self._on_finished(self)

    def _sync_peers(self, peers: set[str]) -> None:
        """Tell the endpoint which addresses this call's SIP may come from."""
        if peers != self._peers:
            for ip in peers - self._peers:
                self.endpoint.allow_peer(ip)
            for ip in self._peers - peers:
                self.endpoint.release_peer(ip)
            self._peers = peers

    def _cancel_timer(self, timer_id: TimerId) -> None:
        handle = self._timers.pop(timer_id, None)
        if handle is not None:
            handle.cancel()

    # --- CallSession -------------------------------------------------------------------------
    async def play(self, pcm: bytes) -> bool:
        """Send audio to the callee in real time; True if played to the end, False if stopped."""
        if self.ended is not None or self.state != "confirmed":
            return False
        return await self.media.play(pcm)

    def stop_playback(self) -> None:
        """Barge-in: stop the audio being played now (play() returns False)."""
        self.media.stop_playback()

    @property
    def dtmf_method(self) -> str:
        """How send_dtmf sends: RFC 4733 events if the far end offered telephone-event."""
        return "rfc4733" if self.media.dtmf_pt is not None else "inband"

    async def send_dtmf(self, digits: str) -> None:
        """Send DTMF digits (RFC 4733 if the far end offered telephone-event, else in-band)."""
        if self.ended is None and self.state == "confirmed":
            await self.media.send_dtmf(digits)

    def on_audio(self, callback: Callable[[bytes], None] | None) -> None:
        """Deliver the callee's audio, one 20 ms frame per call of ``callback``."""
        self.media.on_audio(callback)

    def on_sent_audio(self, callback: Callable[[bytes], None] | None) -> None:
        """Deliver what we send, one 20 ms frame per tick (a media stream's outbound track)."""
        self.media.on_sent_audio(callback)

    def set_feed(self, feed: Callable[[], bytes | None] | None) -> None:
        """Send from ``feed`` whenever nothing plays (ringback, a dial step's other leg)."""
        self.media.set_feed(feed)

    def start_recording(self, recorder=None) -> None:
        """Start keeping both directions of audio, time-aligned (handed to ``recorder`` if given)."""
        self.media.start_recording(recorder)

    def stop_recording(self) -> tuple[bytes, bytes]:
        """Stop and return (callee_pcm, our_pcm) kept in memory (empty when a recorder was given)."""
        return self.media.stop_recording()

    async def hangup(self) -> None:
        """End the call from our side: BYE after answer, CANCEL before (status canceled)."""
        self._run(self.core.hangup(self._loop.time()))
        await self._ended_evt.wait()

    async def transfer(self, target: str) -> bool:
        """Blind transfer with REFER (RFC 3515): False if not sent (not answered, a transfer in
        progress, or a target that is no E.164 number nor tel:/sip: URI); its progress comes as
        TransferProgress on ``events``, and a successful one ends the call (we BYE)."""
        try:
            out = self.core.refer(target, self._loop.time())
        except ValueError as exc:
            log.warning("sip.transfer_refused", call_id=self.call_id, error=str(exc))
            return False
        self._run(out)
        if out:
            self.refer_to = self.core.refer_target_uri
        return bool(out)

    def receive(self) -> None:
        """An incoming call: 100 Trying (its core is a ``uas.InboundCore``)."""
        self._run(self.core.receive(self._loop.time()))  # type: ignore[attr-defined]

    async def answer(self) -> None:
        """An incoming call: 180 Ringing and the 200 OK; Answered comes with the caller's ACK."""
        self._run(self.core.answer(self._loop.time()))  # type: ignore[attr-defined]

    async def wait_ended(self) -> Ended:
        await self._ended_evt.wait()
        assert self.ended is not None
        return self.ended

    def abort(self) -> None:
        """Carrier shutdown: stop everything now."""
        self._run(self.core.abort(self._loop.time()))
        for timer_id in list(self._timers):
            self._cancel_timer(timer_id)
        self._sync_peers(set())
