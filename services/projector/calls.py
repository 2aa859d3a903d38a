"""Pure projection logic: how each event changes a call's row. No I/O here.

`apply(row, event)` is the one place where a call's projected state changes; the
projector folds a batch of events through it. Rows are plain dicts keyed by column.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from events import Envelope
from events.catalog import TERMINAL_EVENTS
from events.public import end_reason

_RANK = {"queued": 0, "ringing": 1, "in-progress": 2}  # terminal statuses rank above all
_OPTION_KEYS = ("tts", "audio_url", "record", "transcribe", "recording_channels", "gather", "timeout",
                "flow", "flow_id", "machine_detection", "machine_detection_timeout", "async_amd")


def ts(value: str) -> datetime:
    """RFC 3339 -> aware datetime (Python 3.11 accepts the Z suffix)."""
    return datetime.fromisoformat(value)


def _rank(status: str) -> int:
    return _RANK.get(status, 9)


def new_row(env: Envelope) -> dict[str, Any]:
    at = ts(env.occurred_at)
    return {
        "id": env.call_id, "account_id": env.account_id, "to_number": None, "from_number": None,
        "status": "queued", "direction": "outbound", "carrier": None, "webhook_url": None, "options": {},
        "created_at": at, "updated_at": at, "ringing_at": None, "answered_at": None, "ended_at": None,
        "duration": None, "answered_by": None, "end_reason": None, "sip_code": None, "hangup_by": None,
        "recording_id": None, "gather": None, "events_count": 0, "last_event_id": None, "parent_call_id": None,
    }


def _advance(row: dict[str, Any], status: str) -> None:
    if _rank(row["status"]) < 9 and _rank(status) > _rank(row["status"]):
        row["status"] = status


def apply(row: dict[str, Any] | None, env: Envelope) -> dict[str, Any]:
    """Return the call row after `env` (never mutates the input)."""
    return apply_into(dict(row) if row is not None else new_row(env), env, ts(env.occurred_at))


def fold(row: dict[str, Any] | None, events: list[Envelope], times: list[datetime]) -> dict[str, Any]:
    """The call row after `events` in order (``times[i]`` is ``ts(events[i].occurred_at)``): the same
    as folding :func:`apply` over them, with one copy of the row instead of one per event. Never
    mutates the input."""
    row = dict(row) if row is not None else new_row(events[0])
    for env, at in zip(events, times):
        apply_into(row, env, at)
    return row


def apply_into(row: dict[str, Any], env: Envelope, at: datetime) -> dict[str, Any]:
    """Change `row` in place to the call row after `env`, which occurred at `at`; returns `row`."""
    d = env.data
    t = env.type
    if t == "call.queued":
        row.update(to_number=d.get("to"), from_number=d.get("from"), direction=d.get("direction", "outbound"),
                   carrier=d.get("carrier"), webhook_url=d.get("webhook_url"),
                   options={k: d[k] for k in _OPTION_KEYS if d.get(k) is not None},
                   parent_call_id=d.get("parent_call_id"))
        if d.get("created_at"):
            row["created_at"] = ts(d["created_at"])
    elif t == "call.rejected":
        if _rank(row["status"]) < 9:
            row.update(status="failed", ended_at=at,
                       end_reason="rejected: " + "; ".join(
                           f"{e.get('field') or ''} {e.get('message', '')}".strip() for e in d.get("errors", [])))
    elif t == "call.ringing":
        _advance(row, "ringing")
        row["ringing_at"] = row["ringing_at"] or at
    elif t == "call.answered":
        _advance(row, "in-progress")
        row["answered_at"] = row["answered_at"] or at
        # null unless the event says (those written before machine detection existed say
        # "human"); never overwrites a detection's result.
        row["answered_by"] = row["answered_by"] or d.get("answered_by")
    elif t == "machine_detection.completed":
        # The first result is the call's (as in the orchestrator): the gateway's result after the
        # orchestrator's timer already said unknown is too late to have steered the call.
        row["answered_by"] = row["answered_by"] or d.get("answered_by")
    elif t in TERMINAL_EVENTS:
        if _rank(row["status"]) < 9:  # the first terminal event wins; later ones are noise
            row.update(status=TERMINAL_EVENTS[t], ended_at=at, end_reason=end_reason(d.get("reason"), d.get("hangup_by")),
                       sip_code=d.get("sip_code"), hangup_by=d.get("hangup_by"))
            if d.get("duration") is not None:
                row["duration"] = int(d["duration"])
            elif row["answered_at"] is not None:
                row["duration"] = max(0, round((at - row["answered_at"]).total_seconds()))
            else:
                row["duration"] = 0
    elif t in ("gather.completed", "gather.timeout"):
        row["gather"] = {
            "status": "completed" if t == "gather.completed" else "timeout",
            "digits": d.get("digits", ""),
            "finished_on_key": d.get("finished_on_key"),
            "speech": d.get("speech"),
        }
    elif t == "recording.completed":
        row["recording_id"] = d.get("recording_id")
    row["updated_at"] = max(row["updated_at"], at)
    row["events_count"] += 1
    row["last_event_id"] = env.id
    return row


def gather_row(env: Envelope, at: datetime | None = None) -> dict[str, Any] | None:
    """A row for the gathers table, if this event is a gather outcome."""
    if env.type not in ("gather.completed", "gather.timeout"):
        return None
    d = env.data
    return {"event_id": env.id, "call_id": env.call_id, "account_id": env.account_id,
            "status": "completed" if env.type == "gather.completed" else "timeout",
            "digits": d.get("digits", ""), "finished_on_key": d.get("finished_on_key"),
            "speech": d.get("speech"), "step": d.get("step"), "occurred_at": at or ts(env.occurred_at)}


def recording_row(env: Envelope, at: datetime | None = None) -> dict[str, Any] | None:
    if env.type != "recording.completed":
        return None
    d = env.data
    return {"id": d["recording_id"], "call_id": env.call_id, "account_id": env.account_id,
            "wav_ref": d["wav_ref"], "mp3_ref": d.get("mp3_ref"), "duration_ms": int(d["duration_ms"]),
            "size_bytes": int(d.get("size_bytes", 0)), "sha256": d.get("sha256", ""),
            "channels": d.get("channels", "mono"), "created_at": at or ts(env.occurred_at)}


def transcription_row(env: Envelope, at: datetime | None = None) -> dict[str, Any] | None:
    if env.type != "transcription.completed":
        return None
    d = env.data
    return {"recording_id": d.get("recording_id") or env.call_id, "call_id": env.call_id,
            "account_id": env.account_id, "text": d["text"], "confidence": float(d["confidence"]),
            "segments": d.get("segments", []), "language": d.get("language"),
            "created_at": at or ts(env.occurred_at)}
