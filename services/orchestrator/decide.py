"""The call state machine as a pure function: decide(state, message, now) -> Decision.

Every step of a call is decided here and nowhere else. Inputs are commands
(PlaceCall, HangupCall) and events (call.ringing, tts.rendered, timer.fired, ...);
outputs are events/instructions to publish plus durable timers to set or clear.
Output ids are derived from the input id and a step name, so re-deciding the same
input after a crash emits byte-identical ids that every consumer dedupes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from events import Envelope
from events.catalog import TERMINAL_EVENTS
from services.orchestrator import flow

RING_GRACE_S = 10  # the carrier enforces the ring timeout; this is the safety net above it
HANGUP_GRACE_S = 10
# Dials whose pacing slot is this close are placed now: calls arrive in batches, and
# spacing a batch by timers would add the timer's latency to every call but the first.
PACING_BURST = timedelta(milliseconds=100)
MAX_CALL_S = 4 * 3600


@dataclass(frozen=True, slots=True)
class TimerOp:
    """Set (due is a datetime) or clear (due is None) the durable timer `name`."""

    name: str
    due: datetime | None
    token: str = ""


@dataclass(slots=True)
class Decision:
    state: dict[str, Any] | None
    emit: list[Envelope] = field(default_factory=list)
    timers: list[TimerOp] = field(default_factory=list)
    pacing_next: datetime | None = None  # new next-free dial slot for the account


def initial_state(call_id: str, account_id: str) -> dict[str, Any]:
    return {"call_id": call_id, "account_id": account_id, "phase": "new", "request": {}, "audio_ref": None,
            "media_failed": None, "answered": False, "dialed": False, "played": False, "gathering": False,
            "hangup_sent": False, "ended": False, "seen": 0}


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decide(state: dict[str, Any] | None, msg: Envelope, now: datetime, *,
           pacing_slot: datetime | None = None, cps: float = 10.0,
           validation_errors: list[dict] | None = None, flow_def: dict | None = None) -> Decision:
    """Next state and outputs for one input. `pacing_slot` is the account's next free dial time."""
    st = dict(state) if state else initial_state(msg.call_id, msg.account_id)
    st["seen"] = st.get("seen", 0) + 1
    d = Decision(st)
    t = msg.type
    if st["ended"] and t != "PlaceCall":
        return d  # a finished call ignores late messages
    if st.get("flow") and t in _FLOW_EVENTS and st["answered"] and not st["hangup_sent"]:
        flow.on_event(st, msg, d, now)
        return d
    handler = _HANDLERS.get(t)
    if handler is not None:
        handler(st, msg, now, d, pacing_slot=pacing_slot, cps=cps, validation_errors=validation_errors,
                flow_def=flow_def)
    elif t in TERMINAL_EVENTS:
        _ended(st, msg, now, d)
    return d


# --- handlers ----------------------------------------------------------------------------

def _place_call(st, msg, now, d, *, pacing_slot, cps, validation_errors, flow_def=None):
    if st["phase"] != "new":
        return  # the same PlaceCall again (a producer retry): already handled
    if validation_errors:
        st.update(phase="rejected", ended=True)
        d.emit.append(msg.caused("call.rejected", {"errors": validation_errors}))
        return
    req = dict(msg.data)
    req.setdefault("created_at", msg.occurred_at)
    st.update(phase="queued", request=req)
    queued = {**req, "direction": "outbound"}
    if req.get("flow") or flow_def:
        # The flow as run is part of the call's state (a stored flow may change later).
        st["flow"] = {"def": req.get("flow") or flow_def["flow"], "state": {}}
        if flow_def:
            queued["flow_version"] = flow_def["version"]
    d.emit.append(msg.caused("call.queued", queued))
    if req.get("tts"):
        tts = req["tts"]
        d.emit.append(msg.caused("tts.requested", {"text": tts["text"], "voice": tts.get("voice", "en-US-Neural2-F"),
                                                   "speed": tts.get("speed", 1.0), "pitch": tts.get("pitch", 0.0)}))
    elif req.get("audio_url"):
        d.emit.append(msg.caused("audio.requested", {"url": req["audio_url"]}))
    # Pacing: calls over the account's rate wait in `queued` for their slot; none is rejected.
    slot = max(now, pacing_slot or now)
    d.pacing_next = slot + timedelta(seconds=1.0 / max(cps, 0.001))
    if slot <= now + PACING_BURST:
        _dial(st, msg, d, now)
    else:
        d.timers.append(TimerOp("pace", slot, token=msg.id))


def _dial(st, cause: Envelope, d: Decision, now: datetime) -> None:
    req = st["request"]
    timeout = int(req.get("timeout", 30))
    st.update(dialed=True, phase="dialing")
    d.emit.append(cause.caused("dial.requested", {
        "to": req["to"], "from": req["from"], "timeout": timeout,
        "carrier": req.get("carrier", "sandbox")}, step="dial"))
    d.timers.append(TimerOp("ring_timeout", now + timedelta(seconds=timeout + RING_GRACE_S), token=cause.id))


def _timer_fired(st, msg, now, d, **_):
    name = msg.data.get("timer")
    if name == "pace" and not st["dialed"] and st["phase"] == "queued":
        _dial(st, msg, d, now)
    elif name == "ring_timeout" and not st["answered"] and st["dialed"] and not st["hangup_sent"]:
        st["hangup_sent"] = True
        d.emit.append(msg.caused("hangup.requested", {"reason": "ring timeout", "status": "no-answer"}))
        d.timers.append(TimerOp("hangup_grace", now + timedelta(seconds=HANGUP_GRACE_S), token=msg.id))
    elif name == "hangup_grace" and not st["ended"]:
        # Nobody answered our hangup: the gateway that had the call is gone. End it here
        # rather than leave it ringing forever.
        st.update(ended=True, phase="ended")
        d.emit.append(msg.caused("call.failed", {"reason": "no response from the telephony gateway",
                                                 "hangup_by": "system"}))
    elif name == "max_duration" and not st["hangup_sent"]:
        st["hangup_sent"] = True
        d.emit.append(msg.caused("hangup.requested", {"reason": "maximum call duration"}))


def _hangup_call(st, msg, now, d, **_):
    if st["phase"] in ("new", "rejected"):
        return
    if not st["dialed"]:
        # Still waiting for its pacing slot: nothing to tell the carrier.
        st.update(ended=True, phase="ended")
        d.emit.append(msg.caused("call.canceled", {"reason": msg.data.get("reason", "api"), "hangup_by": "caller",
                                                   "duration": 0}))
        d.timers.append(TimerOp("pace", None))
        return
    if not st["hangup_sent"]:
        st["hangup_sent"] = True
        d.emit.append(msg.caused("hangup.requested", {"reason": msg.data.get("reason", "api")}))


def _ringing(st, msg, now, d, **_):
    if st["phase"] in ("dialing", "queued"):
        st["phase"] = "ringing"


def _answered(st, msg, now, d, **_):
    if st["answered"]:
        return
    st.update(answered=True, phase="in-progress")
    d.timers.append(TimerOp("ring_timeout", None))
    d.timers.append(TimerOp("max_duration", now + timedelta(seconds=MAX_CALL_S), token=msg.id))
    req = st["request"]
    if req.get("record"):
        st["recording"] = True
        d.emit.append(msg.caused("record.requested", {"channels": req.get("recording_channels", "mono"),
                                                      "transcribe": bool(req.get("transcribe"))}))
    if st.get("flow"):
        flow.start(st, msg, d, now)
    else:
        _next_step(st, msg, d)


def _media_ready(st, msg, now, d, **_):
    if st["audio_ref"] is None:
        st["audio_ref"] = msg.data["audio_ref"]
        _next_step(st, msg, d)


def _media_failed(st, msg, now, d, **_):
    st["media_failed"] = msg.data.get("reason", "media failed")
    _next_step(st, msg, d)


def _prompt_finished(st, msg, now, d, **_):
    if st["played"] and st["phase"] == "playing":
        st["phase"] = "prompted"
        _next_step(st, msg, d)


def _gather_done(st, msg, now, d, **_):
    if st["gathering"]:
        st.update(gathering=False, phase="gathered")
        _next_step(st, msg, d)


def _next_step(st, cause: Envelope, d: Decision) -> None:
    """The in-call script: play the prompt, then gather if asked, then hang up."""
    if not st["answered"] or st["hangup_sent"]:
        return
    if st["media_failed"]:
        st["hangup_sent"] = True
        d.emit.append(cause.caused("hangup.requested", {"reason": st["media_failed"], "status": "failed"},
                                   step="hangup"))
        return
    req = st["request"]
    if not st["played"]:
        if st["audio_ref"] is None:
            return  # answered before the render finished: play as soon as it lands
        st.update(played=True, phase="playing")
        gather = req.get("gather")
        d.emit.append(cause.caused("play.requested", {
            "audio_ref": st["audio_ref"], "barge_in": bool(gather and gather.get("barge_in", True))}, step="play"))
        return
    if st["phase"] == "prompted" and req.get("gather"):
        g = req["gather"]
        st.update(gathering=True, phase="gathering")
        d.emit.append(cause.caused("gather.requested", {
            "type": g.get("type", "dtmf"), "num_digits": g.get("num_digits"),
            "finish_on_key": g.get("finish_on_key", "#"), "timeout": g.get("timeout", 5),
            "inter_digit_timeout": g.get("inter_digit_timeout"), "hints": g.get("hints"),
            "language": g.get("language")}, step="gather"))
        return
    if st["phase"] in ("prompted", "gathered"):
        st["hangup_sent"] = True
        d.emit.append(cause.caused("hangup.requested", {"reason": "script finished"}, step="hangup"))


def _ended(st, msg, now, d) -> None:
    st.update(ended=True, phase="ended")
    for name in ("pace", "ring_timeout", "max_duration", "hangup_grace", "flow_pause"):
        d.timers.append(TimerOp(name, None))


_FLOW_EVENTS = {"tts.rendered", "audio.fetched", "tts.failed", "audio.failed", "prompt.finished",
                "gather.completed", "gather.timeout", "timer.fired", "flow.webhook.answered", "flow.webhook.failed"}

_HANDLERS = {
    "PlaceCall": _place_call,
    "HangupCall": _hangup_call,
    "timer.fired": _timer_fired,
    "call.ringing": _ringing,
    "call.answered": _answered,
    "tts.rendered": _media_ready,
    "audio.fetched": _media_ready,
    "tts.failed": _media_failed,
    "audio.failed": _media_failed,
    "prompt.finished": _prompt_finished,
    "gather.completed": _gather_done,
    "gather.timeout": _gather_done,
}
