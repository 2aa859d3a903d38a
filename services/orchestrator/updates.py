"""Changes to a live call (UpdateCall) inside the call state machine (pure, like flow.py).

An update redirects the call to another flow, plays audio now, sends digits or controls
the recording (a hangup, `status: completed`, is decide.py's HangupCall path). Each one is
a `call.updated` event naming the changes and those it could not apply (`skipped`, with a
code: the call is not answered yet, not recorded, ...), followed by the instructions:

- **redirect** (`flow` / `flow_id`, optionally from `step`): `interrupt.requested` (the
  gateway stops what plays and the open gather and drops the instructions sent before it),
  then the new flow's first step. Step entries keep counting across flows, so a media
  event of the old flow never matches a step of the new one. Before answer, the new flow
  simply replaces the one that would start on answer.
- **play** (`tts` / `audio_url`): rendered like a prompt, tagged `update:<update id>` (its
  media events are this module's, never the script's or the flow's), and played in the
  order the updates came. `interrupt: true` (the default) first sends
  `interrupt.requested` and ends the script or flow: the call hangs up once the update
  audio has played (Twilio's update). `interrupt: false` queues the audio after what
  plays; the script's or flow's own hangup waits until the queued audio has played.
- **send_digits**: `dtmf.send.requested`.
- **hold**: `hold.requested` (the gateway plays music on hold and pauses the call's bridge).
- **recording**: `record.requested` (start) or `record.control.requested` (pause, resume,
  stop), following `Updates.recording`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from events import Envelope
from events.catalog import UPDATE_CHANGES
from services.orchestrator import flow
from services.orchestrator.outputs import Emit, Output
from services.orchestrator.state import (MAX_APPLIED, CallState, FlowRun, Phase, UpdatePlay, Updates,
                                         record_options)

Step = tuple[CallState, tuple[Output, ...]]
_NOTHING: tuple[Output, ...] = ()
TAG = "update:"
MEDIA_EVENTS = frozenset({"tts.rendered", "audio.fetched", "tts.failed", "audio.failed", "prompt.finished"})


def owns(msg: Envelope) -> bool:
    """Is this a media event of update audio (not the script's or a flow step's)?"""
    step = msg.data.get("step") if isinstance(msg.data, dict) else None
    return msg.type in MEDIA_EVENTS and isinstance(step, str) and step.startswith(TAG)


def seen(s: CallState, msg: Envelope) -> bool:
    """Was this UpdateCall decided already (a redelivered or re-produced command)?"""
    return msg.id in s.updates.applied


def _with(s: CallState, **changes: Any) -> CallState:
    return replace(s, updates=replace(s.updates, **changes))


def mark_applied(s: CallState, msg: Envelope) -> CallState:
    return _with(s, applied=(*s.updates.applied, msg.id)[-MAX_APPLIED:])


def updated_event(msg: Envelope, skipped: list[dict[str, Any]], **extra: Any) -> Emit:
    """The `call.updated` fact of one UpdateCall."""
    d = msg.data
    data: dict[str, Any] = {"changes": _changes(d), "update_id": msg.id, "skipped": skipped}
    if d.get("tts") is not None or d.get("audio_url") is not None:
        data["interrupt"] = bool(d.get("interrupt", True))
    for k in ("flow_id", "step", "send_digits", "recording", "hold", "status"):
        if d.get(k) is not None:
            data[k] = d[k]
    data.update({k: v for k, v in extra.items() if v is not None})
    return Emit(msg.caused("call.updated", data, step="updated"))


def refused_event(msg: Envelope, errors: list[dict[str, Any]]) -> Emit:
    """`call.updated` of an UpdateCall refused whole: the errors, none of its (unchecked) payload."""
    return Emit(msg.caused("call.updated", {"changes": [], "update_id": msg.id, "skipped": [
        {"field": e.get("field"), "code": e.get("code"), "message": e.get("message")} for e in errors]},
        step="updated"))


def _skip(field: str, code: str, message: str) -> dict[str, Any]:
    return {"field": field, "code": code, "message": message}


def apply(s: CallState, msg: Envelope, now: datetime, flow_def: dict | None) -> Step:
    """Decide one valid UpdateCall (not a hangup) on a call that is placed and not over."""
    d = msg.data
    s = mark_applied(s, msg)
    skipped: list[dict[str, Any]] = []
    out: list[Output] = []
    if s.hangup_sent:
        return s, (updated_event(msg, [_skip(k, "call_ending", "the call is hanging up")
                                       for k in _changes(d)]),)
    redirect = d.get("flow") is not None or d.get("flow_id") is not None
    if redirect:
        definition = d.get("flow") or (flow_def or {}).get("flow")
        if d.get("step"):
            definition = {**definition, "start": d["step"]}  # the flow as run starts there
        s, more = _redirect(s, msg, definition, now)
        out += more
    if not s.answered:
        for k in ("tts", "audio_url", "send_digits", "recording", "hold"):
            if d.get(k) is not None:
                skipped.append(_skip(k, "call_not_answered", f"{k} needs an answered call"))
        return s, (updated_event(msg, skipped, flow_version=(flow_def or {}).get("version")), *out)
    if d.get("tts") is not None or d.get("audio_url") is not None:
        s, more = _play(s, msg)
        out += more
    if d.get("send_digits"):
        out.append(Emit(msg.caused("dtmf.send.requested", {"digits": d["send_digits"]}, step="digits")))
    if d.get("hold") is not None:
        out.append(Emit(msg.caused("hold.requested", {"hold": bool(d["hold"])}, step="hold")))
    if d.get("recording"):
        s, more, skip = _recording(s, msg, d["recording"])
        out += more
        skipped += skip
    return s, (updated_event(msg, skipped, flow_version=(flow_def or {}).get("version")), *out)


def _changes(d: dict[str, Any]) -> list[str]:
    return [k for k in UPDATE_CHANGES if d.get(k) is not None]


def _interrupt(s: CallState, msg: Envelope) -> tuple[CallState, Emit]:
    """Stop what plays and the open gather; update audio still queued is dropped too."""
    return _with(s, plays=(), held_hangup=None), Emit(msg.caused("interrupt.requested", {"reason": "update"},
                                                                 step="interrupt"))


def _redirect(s: CallState, msg: Envelope, definition: dict[str, Any], now: datetime) -> Step:
    if not s.answered:
        return replace(s, flow=FlowRun(definition)), _NOTHING  # it starts on answer
    entered = s.flow.engine_state.entered if s.flow is not None else 0
    s, stop = _interrupt(s, msg)
    s = replace(s, phase=Phase.IN_PROGRESS, flow=FlowRun(definition))
    s, more = flow.start(s, msg, now, entered=entered)
    return s, (stop, *more)


def _play(s: CallState, msg: Envelope) -> Step:
    d = msg.data
    out: list[Output] = []
    if d.get("interrupt", True):
        s, stop = _interrupt(s, msg)
        out.append(stop)
        s = replace(s, phase=Phase.UPDATED, flow=None)  # the script is over: it ends after this audio
    tag = TAG + msg.id
    s = _with(s, plays=(*s.updates.plays, UpdatePlay(tag)))
    if d.get("tts") is not None:
        t = d["tts"]
        out.append(Emit(msg.caused("tts.requested", {"text": t["text"], "voice": t.get("voice", "en-US-Neural2-F"),
                                                     "speed": t.get("speed", 1.0), "pitch": t.get("pitch", 0.0),
                                                     "step": tag}, step="render")))
    else:
        out.append(Emit(msg.caused("audio.requested", {"url": d["audio_url"], "step": tag}, step="render")))
    return s, tuple(out)


def _recording(s: CallState, msg: Envelope, action: str) -> tuple[CallState, list[Output], list[dict]]:
    rec = s.updates.recording
    if action == "start":
        if s.recording:
            why = "the recording was stopped" if rec == "stopped" else "the call is recorded already"
            return s, [], [_skip("recording", "recording_stopped" if rec == "stopped" else "already_recording", why)]
        return (replace(s, recording=True),
                [Emit(msg.caused("record.requested", record_options(s.request), step="record"))], [])
    if not s.recording or rec == "stopped":
        return s, [], [_skip("recording", "not_recording", f"cannot {action}: the call is not being recorded")]
    nxt = {"pause": "paused", "resume": "", "stop": "stopped"}[action]
    if (action == "pause" and rec == "paused") or (action == "resume" and rec != "paused"):
        return s, [], [_skip("recording", "recording_" + ("paused" if rec == "paused" else "not_paused"),
                             f"cannot {action}: the recording is {'paused' if rec == 'paused' else 'not paused'}")]
    return (_with(s, recording=nxt),
            [Emit(msg.caused("record.control.requested", {"action": action}, step="record"))], [])


# --- the update audio's media events (decide routes them here, see `owns`) --------------

def on_media(s: CallState, msg: Envelope) -> Step:
    """Render done / failed, or played: send what is ready in order; once all of it has
    played, release the script's held hangup, or end a call whose script it replaced."""
    tag = msg.data["step"]
    plays = s.updates.plays
    i = next((n for n, p in enumerate(plays) if p.tag == tag), None)
    if i is None:
        return s, _NOTHING  # interrupted since, or a duplicate
    t = msg.type
    if t in ("tts.rendered", "audio.fetched"):
        if plays[i].audio_ref is not None:
            return s, _NOTHING
        plays = (*plays[:i], replace(plays[i], audio_ref=msg.data["audio_ref"]), *plays[i + 1:])
    elif t in ("tts.failed", "audio.failed") or (t == "prompt.finished" and plays[i].sent):
        plays = (*plays[:i], *plays[i + 1:])  # a render that failed is skipped, like a flow's prompt
    else:
        return s, _NOTHING
    out: list[Output] = []
    sending = []
    for n, p in enumerate(plays):  # in the order the updates came: stop at the first not rendered
        if p.sent:
            continue
        if p.audio_ref is None:
            break
        sending.append(n)
        out.append(Emit(msg.caused("play.requested", {"audio_ref": p.audio_ref, "barge_in": False, "step": p.tag},
                                   step=f"play:{p.tag}")))
    plays = tuple(replace(p, sent=True) if n in sending else p for n, p in enumerate(plays))
    s = _with(s, plays=plays)
    if not plays:
        s, more = _drained(s, msg)
        out += more
    return s, tuple(out)


def _drained(s: CallState, cause: Envelope) -> Step:
    if s.hangup_sent or not s.answered:
        return s, _NOTHING
    held = s.updates.held_hangup
    if held is not None:
        return _with(replace(s, hangup_sent=True), held_hangup=None), (
            Emit(cause.caused("hangup.requested", dict(held), step="held-hangup")),)
    if s.phase is Phase.UPDATED:
        return replace(s, hangup_sent=True), (
            Emit(cause.caused("hangup.requested", {"reason": "script finished"}, step="update-hangup")),)
    return s, _NOTHING


def hold_hangup(before: CallState, s: CallState, outputs: tuple[Output, ...]) -> tuple[CallState, tuple[Output, ...]]:
    """While update audio is queued, the hangup the script or flow asks for waits for it (the
    queued audio would be cut off): taken out of `outputs` and kept in the state."""
    if not s.updates.plays or before.hangup_sent or not s.hangup_sent:
        return s, outputs
    kept, held = [], None
    for o in outputs:
        if type(o) is Emit and o.event.type == "hangup.requested":
            held = dict(o.event.data)
        else:
            kept.append(o)
    if held is None:
        return s, outputs
    return _with(replace(s, hangup_sent=False), held_hangup=held), tuple(kept)
