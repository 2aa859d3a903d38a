"""Twilio Media Streams' message protocol, as pure functions (no sockets, no clock).

What we send (Twilio -> app in Twilio's terms): ``connected``, ``start``, ``media``,
``dtmf``, ``mark`` (an app's mark, echoed once the audio queued before it has played)
and ``stop``. What an app sends: ``media`` (audio to play into the call), ``mark`` and
``clear``. Field names, nesting and string-typed numbers follow Twilio's documents, so
an app written for Twilio works by changing the URL (docs/media-streams.md).

Audio on the wire is 8 kHz mono G.711 mu-law, base64, one 20 ms frame (160 bytes) per
``media`` message; inside the gateway it is 16-bit PCM (services/telephony/carrier.py).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from services.common.audio import ulaw_decode, ulaw_encode

Track = Literal["inbound", "outbound"]
TRACKS: dict[str, tuple[Track, ...]] = {"inbound": ("inbound",), "outbound": ("outbound",),
                                        "both": ("inbound", "outbound")}
MEDIA_FORMAT = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
MAX_MESSAGE_BYTES = 256 * 1024  # an app's message larger than this is refused (a 20 ms frame is ~300 bytes)
MAX_MEDIA_BYTES = 80000  # one app message carries at most 10 s of mu-law (Twilio apps send 20 ms to a few s)


def stream_sid(cause_id: str) -> str:
    """Twilio-shaped stream id ("MZ" + 32 hex), derived from the event that started the stream,
    so a redelivered instruction names the same stream."""
    return "MZ" + uuid.uuid5(uuid.NAMESPACE_URL, f"stream/{cause_id}").hex


class Outgoing:
    """Builds the messages of one stream, numbering them (``sequenceNumber``) and each track's
    media chunks (``chunk``) from 1, as Twilio does. Not thread-safe; one per stream."""

    def __init__(self, sid: str, call_id: str, account_id: str):
        self.sid, self.call_id, self.account_id = sid, call_id, account_id
        self.seq = 0
        self.chunks: dict[str, int] = {"inbound": 0, "outbound": 0}

    def _next(self) -> str:
        self.seq += 1
        return str(self.seq)

    def connected(self) -> bytes:
        # Twilio's first message carries no sequence number.
        return orjson.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, tracks: tuple[str, ...], parameters: dict[str, str]) -> bytes:
        return orjson.dumps({
            "event": "start", "sequenceNumber": self._next(), "streamSid": self.sid,
            "start": {"streamSid": self.sid, "accountSid": self.account_id, "callSid": self.call_id,
                      "tracks": list(tracks), "customParameters": dict(parameters), "mediaFormat": MEDIA_FORMAT}})

    def media(self, track: str, pcm: bytes, timestamp_ms: int) -> bytes:
        """One frame of 16-bit PCM as a ``media`` message; ``timestamp_ms`` counts from the stream's start."""
        self.chunks[track] += 1
        payload = base64.b64encode(ulaw_encode(pcm)).decode()
        return orjson.dumps({"event": "media", "sequenceNumber": self._next(), "streamSid": self.sid,
                             "media": {"track": track, "chunk": str(self.chunks[track]),
                                       "timestamp": str(timestamp_ms), "payload": payload}})

    def dtmf(self, digit: str) -> bytes:
        return orjson.dumps({"event": "dtmf", "sequenceNumber": self._next(), "streamSid": self.sid,
                             "dtmf": {"track": "inbound_track", "digit": digit}})

    def mark(self, name: str) -> bytes:
        return orjson.dumps({"event": "mark", "sequenceNumber": self._next(), "streamSid": self.sid,
                             "mark": {"name": name}})

    def stop(self) -> bytes:
        return orjson.dumps({"event": "stop", "sequenceNumber": self._next(), "streamSid": self.sid,
                             "stop": {"accountSid": self.account_id, "callSid": self.call_id}})


# --- what an app sends --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Media:
    pcm: bytes  # 16-bit PCM, any length (split into 20 ms frames by the playout queue)


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Clear:
    pass


@dataclass(frozen=True, slots=True)
class Invalid:
    """A message we cannot use; the stream goes on (Twilio ignores such messages too)."""

    reason: str
    data: dict[str, Any] = field(default_factory=dict)


AppMessage = Media | Mark | Clear | Invalid


def parse(raw: str | bytes, sid: str, audio: bool = True) -> AppMessage:
    """One message from the app. Never raises: what cannot be used is ``Invalid`` with why.

    Bad inputs: not JSON or not an object -> invalid; too large -> invalid; an unknown
    ``event`` -> invalid (ignored); a ``streamSid`` naming another stream -> invalid; a
    ``media`` without a base64 ``payload`` or with more than 10 s of audio -> invalid; a
    ``mark`` without a string ``name`` -> invalid. Binary frames are read as JSON text too.
    ``audio=False`` (a one-way stream, whose app's audio is not played) skips decoding it.
    """
    if len(raw) > MAX_MESSAGE_BYTES:
        return Invalid(f"message too large ({len(raw)} bytes)")
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Invalid("not JSON")
    if not isinstance(msg, dict):
        return Invalid("not a JSON object")
    event = msg.get("event")
    other = msg.get("streamSid")
    if other is not None and other != sid:
        return Invalid(f"streamSid {other!r} is not this stream")
    if event == "media":
        payload = (msg.get("media") or {}).get("payload") if isinstance(msg.get("media"), dict) else None
        if not isinstance(payload, str):
            return Invalid("media without a payload")
        try:
            ulaw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            return Invalid("media payload is not base64")
        if len(ulaw) > MAX_MEDIA_BYTES:
            return Invalid(f"media payload too long ({len(ulaw)} bytes, at most {MAX_MEDIA_BYTES})")
        return Media(ulaw_decode(ulaw) if audio else b"")
    if event == "mark":
        name = (msg.get("mark") or {}).get("name") if isinstance(msg.get("mark"), dict) else None
        if not isinstance(name, str) or not name or len(name) > 256:
            return Invalid("mark without a name")
        return Mark(name)
    if event == "clear":
        return Clear()
    return Invalid(f"unknown event {event!r}", {"event": str(event)[:64]})
