"""Pure mapping from call events to webhook bodies (documented in schemas/webhooks/).

Every body starts with `call_id` and `type`; the gather body is exactly the one in the
public docs (`{"call_id", "type": "gather.completed", "digits", "finished_on_key"}`)
plus the documented extra fields `speech`, `step`, `event_id` and `occurred_at`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from events import Envelope
from events.catalog import FINAL_STATUSES
from events.public import public_data
from services.lib.intake import status_events

# Event type -> public call status it reports.
STATUS_EVENTS: dict[str, str] = {
    "call.queued": "queued",
    "call.ringing": "ringing",
    "call.answered": "in-progress",
    **{f"call.{s}": s for s in FINAL_STATUSES},
}
GATHER_EVENTS = ("gather.completed", "gather.timeout")
MEDIA_EVENTS = ("recording.completed", "transcription.completed")
TRANSCRIPT_EVENTS = ("transcription.partial", "transcription.completed")  # live transcripts, when asked
AMD_EVENTS = ("machine_detection.completed",)
STREAM_EVENTS = ("stream.started", "stream.stopped", "stream.failed")  # Twilio's stream status callbacks
# The documented fields of a stream webhook (schemas/webhooks/stream.*.json): only these,
# whatever else the event may carry.
_STREAM_FIELDS = ("stream_sid", "url", "track", "bidirectional", "step", "parameters", "reason", "frames_sent",
                  "frames_received", "frames_dropped", "frames_shed")
WEBHOOK_TYPES = (*STATUS_EVENTS, *GATHER_EVENTS, *MEDIA_EVENTS, "transcription.partial", *AMD_EVENTS, *STREAM_EVENTS)


@dataclass(frozen=True, slots=True)
class Routes:
    """Where a call's webhooks go, from its request (the call.queued event)."""

    webhook_url: str | None = None
    gather_webhook_url: str | None = None
    transcript_url: str | None = None  # where live transcripts go (transcribe_webhook_url, or webhook_url)
    amd_webhook_url: str | None = None
    status_events: frozenset[str] | None = None  # the statuses whose webhook is sent; None: all

    @classmethod
    def from_queued(cls, data: dict[str, Any]) -> "Routes":
        gather = data.get("gather") if isinstance(data.get("gather"), dict) else {}
        webhook_url = data.get("webhook_url") or None
        transcript_url = data.get("transcribe_webhook_url") or (webhook_url if data.get("transcribe_webhooks") else None)
        return cls(webhook_url=webhook_url, gather_webhook_url=(gather or {}).get("webhook_url") or None,
                   transcript_url=transcript_url, amd_webhook_url=data.get("amd_webhook_url") or None,
                   status_events=status_events(data.get("status_callback_events")))

    def url_for(self, event_type: str) -> str | None:
        """The URL an event of `event_type` goes to, or None (nothing to send)."""
        if event_type in TRANSCRIPT_EVENTS and self.transcript_url:
            return self.transcript_url
        if event_type == "transcription.partial":
            return None  # live transcripts only when asked
        if event_type in GATHER_EVENTS:
            return self.gather_webhook_url or self.webhook_url
        if event_type in AMD_EVENTS:
            return self.amd_webhook_url or self.webhook_url
        if event_type in STATUS_EVENTS and self.status_events is not None \
                and STATUS_EVENTS[event_type] not in self.status_events:
            return None  # the call's status_callback_events leave this one out
        if event_type in WEBHOOK_TYPES:
            return self.webhook_url
        return None


def _drop_none(d: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None or k in keep}


def payload(env: Envelope) -> dict[str, Any] | None:
    """The webhook body for an event, or None if the type is not sent as a webhook.

    Bodies are built from the public view of the event (events/public.py): an internal
    field (cache_hit, a media-store ref ...) cannot end up in one."""
    d = public_data(env.type, env.data)
    head = {"call_id": env.call_id, "type": env.type}
    tail = {"event_id": env.id, "occurred_at": env.occurred_at}
    t = env.type
    if t in STATUS_EVENTS:
        body: dict[str, Any] = {**head, "status": STATUS_EVENTS[t]}
        if t == "call.queued":
            body.update(to=d.get("to"), **{"from": d.get("from") or d.get("from_")},
                        direction=d.get("direction", "outbound"))
        elif t == "call.answered":
            body.update(answered_by=d.get("answered_by"))
        elif t != "call.ringing":
            body.update(reason=d.get("reason") or None, duration=d.get("duration"), sip_code=d.get("sip_code"),
                        hangup_by=d.get("hangup_by"))
        return _drop_none({**body, **tail})
    if t == "gather.completed":
        body = {**head, "digits": d.get("digits", ""), "finished_on_key": d.get("finished_on_key"),
                "speech": d.get("speech"), "step": d.get("step"), **tail}
        return _drop_none(body, keep=("finished_on_key",))
    if t == "gather.timeout":
        return _drop_none({**head, "digits": d.get("digits", ""), "step": d.get("step"), **tail})
    if t == "recording.completed":
        ms = d.get("duration_ms")
        return _drop_none({**head, "recording_id": d.get("recording_id"),
                           "duration": round(ms / 1000) if isinstance(ms, (int, float)) else None,
                           "duration_ms": ms, "channels": d.get("channels"), "size_bytes": d.get("size_bytes"),
                           "sha256": d.get("sha256") or None, **tail})
    if t == "transcription.partial":
        # `utterance_id` names the utterance on its channel: a receiver replaces the text it
        # holds for that id by each newer partial, and by the final one (`final: true`).
        channel, n = d.get("channel", "callee"), d.get("utterance", 0)
        return {**head, "utterance_id": f"{channel}-{n}", "utterance": n, "channel": channel,
                "text": d.get("text", ""), "final": bool(d.get("final")), "offset_ms": d.get("offset_ms", 0),
                "duration_ms": d.get("duration_ms", 0), **tail}
    if t == "machine_detection.completed":
        return _drop_none({**head, "answered_by": d.get("answered_by"), "mode": d.get("mode"),
                           "decision_ms": d.get("decision_ms"), "beep_ms": d.get("beep_ms"), **tail})
    if t in STREAM_EVENTS:  # the stream's ids, url (without query), track, reason and frame counts
        return _drop_none({**head, **{k: d[k] for k in _STREAM_FIELDS if k in d}, **tail})
    if t == "transcription.completed":
        return _drop_none({**head, "recording_id": d.get("recording_id"), "text": d.get("text", ""),
                           "confidence": d.get("confidence"), "language": d.get("language"), **tail})
    return None


def body_bytes(body: dict[str, Any]) -> bytes:
    """The exact bytes posted (and signed): compact JSON, keys in documented order."""
    return orjson.dumps(body)
