"""The carrier contract: what the telephony gateway needs from a phone network.

Two implementations live beside this module: the sandbox carrier (embedded default,
used by every ``sk_test_`` key) and the SIP carrier (SIP/RTP to a trunk, ``sk_live_``).
Audio crossing this boundary is always 8 kHz, 16-bit signed little-endian mono PCM,
in 20 ms frames (320 bytes) where framing matters.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:  # the SIP package imports this module
    from services.telephony.sip.locate import Target
    from services.telephony.sip.policy import TrunkPolicy

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2  # 320 bytes of s16le


def split_frames(pcm: bytes) -> list[bytes]:
    """`pcm` as whole 20 ms frames, the last one padded with silence."""
    pcm = pcm + bytes((-len(pcm)) % FRAME_BYTES)
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    """Where and how to send SIP for one account (secrets never logged: see __repr__)."""

    host: str
    port: int | None = 5060  # None: the servers are located by DNS (RFC 3263: sip/locate.py)
    transport: str = "udp"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    caller_id: str | None = None  # overrides `from` when the trunk demands a fixed CLI
    # The vetted IP the SIP goes to (services/telephony/trunks.py resolves ``host`` under the
    # SSRF rules once per call); None: ``host`` as given. URIs keep ``host``.
    address: str | None = field(default=None, compare=False)
    # Where the SIP goes, in the order to fail over (vetted like ``address``, which is the
    # first one's); empty: ``address`` (or ``host``) and ``port`` alone.
    targets: tuple[Target, ...] = field(default=(), compare=False)
    # What its calls accept: digest realm, legacy digest, hops off the trunk (None: strict).
    policy: TrunkPolicy | None = field(default=None, compare=False)
    # SRTP with SDES keys: off | optional | required (services/telephony/sip/srtp.py).
    srtp: str = "off"


@dataclass(frozen=True, slots=True)
class DialRequest:
    call_id: str
    to: str
    from_: str
    timeout_s: float = 30.0
    trunk: TrunkConfig | None = None
    account_id: str = ""


# What a carrier reports about a call, in order, on CallSession.events.
@dataclass(frozen=True, slots=True)
class Ringing:
    early_media: bool = False


@dataclass(frozen=True, slots=True)
class Answered:
    pass


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    digit: str
    duration_ms: int = 0
    method: str = "rfc4733"  # rfc4733 | inband | sandbox


@dataclass(frozen=True, slots=True)
class Ended:
    """Terminal: status is one of completed, busy, no-answer, failed, canceled."""

    status: str
    reason: str = ""
    sip_code: int | None = None
    hangup_by: str = "callee"  # callee | caller | system


@dataclass(frozen=True, slots=True)
class TransferProgress:
    """A blind transfer's progress (SIP: the REFER's response, then each NOTIFY's sipfrag).

    ``code`` is the SIP status of the transferee's call to the target (``180`` ringing, ``200``
    connected, ``486`` busy...), or of the REFER itself when the far end refused it; ``final``:
    the transfer is over, succeeded if ``code`` is 2xx (the call then ends) and failed otherwise
    (the call stays up). ``code`` is None when the far end ended its report without an outcome."""

    code: int | None
    reason: str = ""
    final: bool = False

    @property
    def succeeded(self) -> bool:
        return self.final and self.code is not None and 200 <= self.code < 300


CarrierEvent = Ringing | Answered | DtmfReceived | TransferProgress | Ended

# A call's carrier events wait here while the gateway cannot publish them (Kafka away).
# A call has a handful (ringing, answered, its digits, the end): 1,000 is a keypad flood.
EVENT_BUFFER = 1000


def event_queue() -> asyncio.Queue:
    """A call session's bounded event buffer (see :func:`offer`)."""
    return asyncio.Queue(maxsize=EVENT_BUFFER)


def offer(queue: asyncio.Queue, ev: CarrierEvent, log: Any = None) -> bool:
    """Buffer `ev` for the gateway; False if it was dropped. When the buffer is full, the
    event is dropped and logged as an error, except the call's end, which takes the place
    of the oldest event: a call is always reported ended."""
    try:
        queue.put_nowait(ev)
        return True
    except asyncio.QueueFull:
        dropped = ev
        if isinstance(ev, Ended):
            dropped = queue.get_nowait()
            queue.put_nowait(ev)
        if log is not None:
            log.error("call event buffer full: event dropped", dropped=type(dropped).__name__,
                      buffer=queue.maxsize)
        return dropped is not ev


class CallSession(Protocol):
    """One call leg, from dial to Ended. ``events`` ends with exactly one Ended."""

    call_id: str
    events: asyncio.Queue[CarrierEvent]

    async def play(self, pcm: bytes) -> bool:
        """Send audio to the callee in real time; True if played to the end, False if stopped."""

    def stop_playback(self) -> None:
        """Barge-in: stop the audio being played now (play() returns False)."""

    async def send_dtmf(self, digits: str) -> None:
        """Send DTMF digits to the far end."""

    def on_audio(self, callback: Callable[[bytes], None] | None) -> None:
        """Deliver the callee's audio, frame by frame, for speech gather and live transcription."""

    def on_sent_audio(self, callback: Callable[[bytes], None] | None) -> None:
        """Deliver what we send the callee, frame by frame on the same tick (a media stream's outbound
        track). Optional: the gateway checks for it."""

    def set_feed(self, feed: Callable[[], bytes | None] | None) -> None:
        """Send from ``feed`` whenever nothing else is being sent (no prompt playing, no digits): it is
        called once per 20 ms frame on the carrier's clock and returns a frame, or None for silence
        (ringback, or the other leg's audio of a dial step). None stops it. Optional: the gateway
        checks for it."""

    def start_recording(self, recorder: Any = None) -> None:
        """Start keeping both directions of audio, time-aligned: each tick's (callee, ours) frames go
        to ``recorder.write`` (a ``services.common.media_store_spool.FrameRecorder``), else to memory."""

    def stop_recording(self) -> tuple[bytes, bytes]:
        """Stop; return (callee_pcm, our_pcm) kept in memory, equal length, aligned in time
        (empty when a recorder was given: it has the audio)."""

    async def hangup(self) -> None:
        """End the call from our side: BYE after answer, CANCEL before (status canceled)."""

    async def transfer(self, target: str) -> bool:
        """Blind transfer of the answered call to ``target`` (E.164, ``tel:`` or ``sip:`` URI):
        False if it cannot be started now; otherwise its progress arrives on ``events`` as
        :class:`TransferProgress`, the last one ``final``. Optional: the gateway checks for it."""


class Carrier(Protocol):
    name: str

    async def dial(self, request: DialRequest) -> CallSession:
        """Start a call; progress arrives on the returned session's events queue."""

    async def close(self) -> None:
        """Release sockets and tasks."""
