"""The call state machine as a pure function: decide(state, message, now) -> (state, outputs).

Every step of a call is decided here and nowhere else. Inputs are commands
(PlaceCall, HangupCall, UpdateCall) and events (call.ringing, tts.rendered, timer.fired, ...),
each listed once in `INPUTS` with its handler; outputs are typed values
(`services.orchestrator.outputs`): events/instructions to publish, durable timers to
arm or disarm, the account's next dial slot. The state is a frozen `CallState`
(`services.orchestrator.state`); every handler returns a new one.

Output ids are derived from the input id and a step name, so re-deciding the same
input after a crash emits byte-identical ids that every consumer dedupes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Callable, Mapping

from events import Envelope
from events.catalog import AMD_TIMEOUT_S, MAX_TIME_LIMIT_S, TERMINAL_EVENTS
from services.lib.flows.call_options import dial_flow
from services.lib.inbound import voice_url_flow
from services.orchestrator import flow, updates
from services.orchestrator.outputs import CancelTimer, Decision, Emit, NextDialSlot, Output, StartTimer
from services.orchestrator.state import CallState, FlowRun, Phase, record_options

RING_GRACE_S = 10  # the carrier enforces the ring timeout; this is the safety net above it
HANGUP_GRACE_S = 10
# Dials whose pacing slot is this close are placed now: calls arrive in batches, and
# spacing a batch by timers would add the timer's latency to every call but the first.
PACING_BURST = timedelta(milliseconds=100)
MAX_CALL_S = MAX_TIME_LIMIT_S  # once answered, unless the call's time_limit says less
TIME_LIMIT = "time_limit"  # the reason (and end_reason) of a call ended by its time limit
# The gateway decides within the call's machine_detection_timeout of audio; this is the safety
# net above it (no audio reaching the gateway, the gateway gone), so a waiting prompt starts.
DETECTION_GRACE_S = 5
RING_TIMEOUT_INBOUND_S = 30  # an inbound call is answered at once; this bounds the gateway's answer
TIMERS = ("pace", "ring_timeout", "max_duration", "hangup_grace", "flow_pause", "machine_detection")

Step = tuple[CallState, tuple[Output, ...]]
_NOTHING: tuple[Output, ...] = ()


@dataclass(frozen=True, slots=True)
class Context:
    """What the I/O edge knows besides the state and the message."""

    now: datetime
    pacing_slot: datetime | None = None  # the account's next free dial time (PlaceCall)
    cps: float = 10.0  # the account's calls-per-second limit (PlaceCall)
    validation_errors: list[dict] | None = None  # why the PlaceCall (UpdateCall) is rejected (empty: it is not)
    flow_def: dict | None = None  # {"version", "flow"} of the stored flow a PlaceCall or UpdateCall names


def decide(state: CallState | None, msg: Envelope, now: datetime, *,
           pacing_slot: datetime | None = None, cps: float = 10.0,
           validation_errors: list[dict] | None = None, flow_def: dict | None = None,
           partitions: int = 0) -> Decision:
    """Next state and outputs for one input. `state` is None for a call not seen before.
    `partitions`: the events topic's partition count (0: unknown), for naming a dial step's
    second call on this call's partition (flow.leg_id)."""
    s = state if state is not None else CallState.new(msg.call_id, msg.account_id)
    s = replace(s, seen=s.seen + 1, partitions=partitions)
    route = INPUTS.get(msg.type)
    if route is None or s.ended:
        return Decision(s)  # not an input, or a finished call: late messages are ignored
    if updates.owns(msg):  # the media of update audio: neither the script's nor the flow's
        return Decision(*updates.on_media(s, msg))
    step = _route(s, msg, route, Context(now, pacing_slot, cps, validation_errors, flow_def))
    if route.source is Source.EVENT and msg.type != "timer.fired":
        step = updates.hold_hangup(s, *step)  # the script's own end waits for queued update audio
    if step[0].ended and is_leg(step[0]):  # (s was live: a finished call takes no input)
        step = _leg_over(step, msg)
    return Decision(*step)


def _route(s: CallState, msg: Envelope, route: "Route", ctx: Context) -> Step:
    """The flow's handler while the call's flow runs (unless it passes), else the script's."""
    if route.flow is not None and s.flow is not None and s.answered and not s.hangup_sent:
        step = route.flow(s, msg, ctx.now)
        if step is not None:  # None: not the flow's input (e.g. the max-duration timer)
            return step
    if route.call is None:
        return s, _NOTHING
    return route.call(s, msg, ctx)


# --- the call script's handlers: (state, message, context) -> (state, outputs) -----------

def _place_call(s: CallState, msg: Envelope, ctx: Context) -> Step:
    if s.phase is not Phase.NEW:
        return s, _NOTHING  # the same PlaceCall again (a producer retry): already handled
    if ctx.validation_errors:
        return replace(s, phase=Phase.REJECTED), (Emit(msg.caused("call.rejected",
                                                                   {"errors": ctx.validation_errors})),)
    req = dict(msg.data)
    req.setdefault("created_at", msg.occurred_at)
    queued = {**req, "direction": "outbound"}
    run = s.flow
    if req.get("dial"):  # click-to-call: the flow of one dial step (after the greeting)
        run = FlowRun(dial_flow(req))
    elif req.get("flow") or ctx.flow_def:
        # The flow as run is part of the call's state (a stored flow may change later).
        run = FlowRun(req.get("flow") or ctx.flow_def["flow"])
        if ctx.flow_def:
            queued["flow_version"] = ctx.flow_def["version"]
    s = replace(s, phase=Phase.QUEUED, request=req, flow=run)
    out: list[Output] = [Emit(msg.caused("call.queued", queued))]
    if req.get("tts") and not req.get("dial"):  # a dial option's greeting is its flow's say step
        tts = req["tts"]
        out.append(Emit(msg.caused("tts.requested", {"text": tts["text"], "voice": tts.get("voice", "en-US-Neural2-F"),
                                                     "speed": tts.get("speed", 1.0),
                                                     "pitch": tts.get("pitch", 0.0)})))
    elif req.get("audio_url") and not req.get("dial"):
        out.append(Emit(msg.caused("audio.requested", {"url": req["audio_url"]})))
    # Pacing: calls over the account's rate wait in `queued` for their slot; none is rejected.
    now = ctx.now
    slot = max(now, ctx.pacing_slot or now)
    out.append(NextDialSlot(slot + timedelta(seconds=1.0 / max(ctx.cps, 0.001))))
    if slot <= now + PACING_BURST:
        s, dial = _dial(s, msg, now)
        out += dial
    else:
        out.append(StartTimer("pace", slot, token=msg.id))
    return s, tuple(out)


def _received(s: CallState, msg: Envelope, ctx: Context) -> Step:
    """call.received: a call came in to a number; it is answered at once, with the number's flow."""
    if s.phase is not Phase.NEW:
        return s, _NOTHING  # a redelivery
    d = msg.data
    req: dict = {"to": d["to"], "from": d["from"], "carrier": d.get("carrier", "sip"), "direction": "inbound",
                 "created_at": msg.occurred_at, "timeout": RING_TIMEOUT_INBOUND_S}
    queued = {k: req[k] for k in ("to", "from", "carrier", "direction", "created_at")}
    for name in ("webhook_url", "voice_url", "flow_id"):
        if d.get(name):
            queued[name] = d[name]
    if d.get("webhook_url"):
        req["webhook_url"] = d["webhook_url"]
    if d.get("caller"):
        req["caller"] = d["caller"]
    run = None
    if d.get("voice_url"):
        run = FlowRun(voice_url_flow(d["voice_url"]))
    elif ctx.flow_def:
        run = FlowRun(ctx.flow_def["flow"])
        queued["flow_version"] = ctx.flow_def["version"]
    s = replace(s, phase=Phase.QUEUED, request=req, flow=run)
    s, dial = _dial(s, msg, ctx.now)
    return s, (Emit(msg.caused("call.queued", queued)), *dial)


def is_leg(s: CallState) -> bool:
    """The call is the second party of another call's dial step (direction outbound-dial)."""
    return bool(s.request.get("parent_call_id"))


def _to_parent(s: CallState, cause: Envelope, type: str, data: dict) -> Emit:
    """An event about this leg on its parent's timeline (keyed by the parent, so it reaches the
    parent's state; the id is derived from this leg's input like any output)."""
    req = s.request
    data = {"child_call_id": s.call_id, **data, "step": req["step"], "tag": req["tag"]}
    if req.get("transfer"):
        data["transfer"] = True
    ev = cause.caused(type, data, step=f"leg:{type}")
    return Emit(replace(ev, call_id=req["parent_call_id"]))


_LEG_OUTCOMES = {"call.completed": "completed", "call.busy": "busy", "call.no-answer": "no-answer",
                 "call.failed": "failed", "call.canceled": "no-answer", "call.rejected": "failed"}


def _leg_over(step: Step, msg: Envelope) -> Step:
    """A leg ended (whichever path ended it): its parent learns the outcome, `dial.ended`."""
    s, out = step
    ends = [msg] if msg.type in TERMINAL_EVENTS else []
    ends += [o.event for o in out if type(o) is Emit and o.event.type in _LEG_OUTCOMES]
    end = ends[0] if ends else None
    outcome = _LEG_OUTCOMES.get(end.type, "failed") if end is not None else "failed"
    duration = None
    if s.request.get("answered_at") and end is not None:
        duration = max(0, round((datetime.fromisoformat(end.occurred_at)
                                 - datetime.fromisoformat(s.request["answered_at"])).total_seconds()))
    reason = (end.data.get("reason") or "; ".join(e.get("message", "") for e in end.data.get("errors", ()))
              if end is not None else "")
    return s, (*out, _to_parent(s, msg, "dial.ended", {"outcome": outcome, "reason": reason, "duration": duration}))


def _leg_requested(s: CallState, msg: Envelope, ctx: Context) -> Step:
    """call.leg.requested: a dial step's second party, placed at once (no pacing: the caller waits,
    hearing ringback) and connected to its parent by the gateway when it answers."""
    if s.phase is not Phase.NEW:
        return s, _NOTHING  # a redelivery
    d = msg.data
    req: dict = {"to": d["to"], "from": d["from"], "carrier": d.get("carrier", "sandbox"),
                 "direction": "outbound-dial", "parent_call_id": d["parent_call_id"], "created_at": msg.occurred_at,
                 "timeout": int(d.get("timeout", 30)), "step": d["step"], "tag": d["tag"]}
    if d.get("record"):
        req["parent_record"] = d["record"]
    if d.get("transfer"):
        req["transfer"] = True  # a sandbox transfer's target: its parent reports a transfer's outcome
    queued = {k: req[k] for k in ("to", "from", "carrier", "direction", "parent_call_id", "created_at")}
    if ctx.validation_errors:  # its caller ID is not the account's: nothing is dialled
        s = replace(s, phase=Phase.REJECTED, request=req)
        return s, (Emit(msg.caused("call.queued", queued)),
                   Emit(msg.caused("call.rejected", {"errors": ctx.validation_errors})))
    s = replace(s, phase=Phase.QUEUED, request=req)
    s, dial = _dial(s, msg, ctx.now)
    return s, (Emit(msg.caused("call.queued", queued)), *dial)


def _dial(s: CallState, cause: Envelope, now: datetime) -> Step:
    req = s.request
    timeout = int(req.get("timeout", 30))
    dial = {"to": req["to"], "from": req["from"], "timeout": timeout, "carrier": req.get("carrier", "sandbox")}
    if is_leg(s):
        dial["direction"] = "outbound-dial"
        dial["parent_call_id"] = req["parent_call_id"]  # the gateway connects the two calls
        if req.get("parent_record"):
            dial["parent_record"] = req["parent_record"]  # ... and records the parent from then
    if req.get("direction") == "inbound":
        dial["direction"] = "inbound"  # the gateway answers the call it holds instead of dialling
        if req.get("caller"):
            dial["caller"] = req["caller"]
    if req.get("record"):
        # The gateway starts recording at the instant of answer, not a Kafka round trip later.
        dial["record"] = record_options(req)
    if req.get("stream"):
        dial["stream"] = req["stream"]  # opened at answer too: a bot hears the callee's first word
    if req.get("machine_detection"):
        # Detection listens from the instant of answer too: a greeting's first words count.
        dial["machine_detection"] = {"mode": req["machine_detection"], "timeout": _detection_timeout(req)}
    return replace(s, phase=Phase.DIALING), (
        Emit(cause.caused("dial.requested", dial, step="dial")),
        StartTimer("ring_timeout", now + timedelta(seconds=timeout + RING_GRACE_S), token=cause.id))


def _detection_timeout(req: Mapping) -> int:
    return int(req.get("machine_detection_timeout") or AMD_TIMEOUT_S)


def _timer_fired(s: CallState, msg: Envelope, ctx: Context) -> Step:
    name = msg.data.get("timer")
    if name == "pace" and s.phase is Phase.QUEUED:
        return _dial(s, msg, ctx.now)
    if name == "ring_timeout" and s.dialed and not s.answered and not s.hangup_sent:
        return replace(s, hangup_sent=True), (
            Emit(msg.caused("hangup.requested", {"reason": "ring timeout", "status": "no-answer"})),
            StartTimer("hangup_grace", ctx.now + timedelta(seconds=HANGUP_GRACE_S), token=msg.id))
    if name == "hangup_grace":
        # Nobody answered our hangup: the gateway that had the call is gone. End it here
        # rather than leave it ringing forever.
        return replace(s, phase=Phase.ENDED), (
            Emit(msg.caused("call.failed", {"reason": "no response from the telephony gateway",
                                            "hangup_by": "system"})),)
    if name == "machine_detection" and s.answered and s.detecting:
        # Nothing came from the gateway: the result is unknown, and the call goes on.
        req = s.request
        result = msg.caused("machine_detection.completed", {
            "answered_by": "unknown", "mode": req["machine_detection"],
            "decision_ms": (_detection_timeout(req) + DETECTION_GRACE_S) * 1000})
        s, out = _machine_detected(s, result, ctx)
        return s, (Emit(result), *out)
    if name == "max_duration" and not s.hangup_sent:
        # The call's time limit (its own, or the default maximum): it ends completed, and its
        # end says why (the gateway reports `end_reason` as the terminal event's reason).
        return replace(s, hangup_sent=True), (Emit(msg.caused("hangup.requested", {
            "reason": TIME_LIMIT, "status": "completed", "end_reason": TIME_LIMIT})),)
    return s, _NOTHING


def _hangup_call(s: CallState, msg: Envelope, ctx: Context) -> Step:
    if s.phase is Phase.NEW:
        return s, _NOTHING
    if not s.dialed:
        # Still waiting for its pacing slot: nothing to tell the carrier.
        return replace(s, phase=Phase.ENDED), (
            Emit(msg.caused("call.canceled", {"reason": msg.data.get("reason", "api"), "hangup_by": "caller",
                                              "duration": 0})),
            CancelTimer("pace"))
    if not s.hangup_sent:
        return replace(s, hangup_sent=True), (Emit(msg.caused("hangup.requested",
                                                              {"reason": msg.data.get("reason", "api")})),)
    return s, _NOTHING


def _update_call(s: CallState, msg: Envelope, ctx: Context) -> Step:
    """A change to a live call (services/orchestrator/updates.py); `status: completed` is the
    HangupCall path."""
    if s.phase is Phase.NEW or updates.seen(s, msg):
        return s, _NOTHING  # no such call placed yet, or this update was decided already
    if ctx.validation_errors:  # refused by the intake (or its stored flow is gone): nothing applied
        return updates.mark_applied(s, msg), (updates.refused_event(msg, ctx.validation_errors),)
    if msg.data.get("status") == "completed":
        s = updates.mark_applied(s, msg)
        s, out = _hangup_call(s, msg, ctx)
        return s, (updates.updated_event(msg, []), *out)
    return updates.apply(s, msg, ctx.now, ctx.flow_def)


def _ringing(s: CallState, msg: Envelope, ctx: Context) -> Step:
    if s.phase in (Phase.DIALING, Phase.QUEUED):
        return replace(s, phase=Phase.RINGING), _NOTHING
    return s, _NOTHING


def _answered(s: CallState, msg: Envelope, ctx: Context) -> Step:
    if s.answered:
        return s, _NOTHING
    s = replace(s, phase=Phase.IN_PROGRESS)
    req = s.request
    limit = req.get("time_limit") or MAX_CALL_S
    if is_leg(s):  # a dial step's second party: connected by the gateway; its parent's flow goes on
        s = replace(s, request={**req, "answered_at": msg.occurred_at})
        return s, (CancelTimer("ring_timeout"),
                   StartTimer("max_duration", ctx.now + timedelta(seconds=limit), token=msg.id),
                   _to_parent(s, msg, "dial.answered", {}))
    out: list[Output] = [CancelTimer("ring_timeout"),
                         StartTimer("max_duration", ctx.now + timedelta(seconds=limit), token=msg.id)]
    if req.get("record"):
        s = replace(s, recording=True)
        out.append(Emit(msg.caused("record.requested", record_options(req))))
    if s.detecting:
        timeout = _detection_timeout(req) + DETECTION_GRACE_S
        out.append(StartTimer("machine_detection", ctx.now + timedelta(seconds=timeout), token=msg.id))
    if s.flow is not None and not s.waiting_for_detection:
        s, more = flow.start(s, msg, ctx.now)
    else:  # the plain script (which waits for a synchronous detection itself), or a flow that waits
        s, more = _next_step(s, msg) if s.flow is None else (s, _NOTHING)
    return s, (*out, *more)


def _machine_detected(s: CallState, msg: Envelope, ctx: Context) -> Step:
    """machine_detection.completed: record who answered; a call that waited for it goes on."""
    if not s.answered or s.answered_by is not None:
        return s, _NOTHING  # a duplicate (or a result for a call not answered: impossible, harmless)
    waited = s.waiting_for_detection
    s = replace(s, answered_by=msg.data.get("answered_by") or "unknown")
    done = (CancelTimer("machine_detection"),)
    if s.hangup_sent:
        return s, done
    if s.flow is not None:
        s, out = flow.start(s, msg, ctx.now) if waited else flow.on_machine_detected(s, msg, ctx.now)
    else:
        s, out = _next_step(s, msg) if waited else (s, _NOTHING)
    return s, (*done, *out)


def _media_ready(s: CallState, msg: Envelope, ctx: Context) -> Step:
    if s.audio_ref is None and s.phase is not Phase.UPDATED:
        return _next_step(replace(s, audio_ref=msg.data["audio_ref"]), msg)
    return s, _NOTHING


def _media_failed(s: CallState, msg: Envelope, ctx: Context) -> Step:
    if s.phase is Phase.UPDATED:
        return s, _NOTHING  # the prompt an update replaced: nothing left to fail
    return _next_step(replace(s, media_failed=msg.data.get("reason", "media failed")), msg)


def _prompt_finished(s: CallState, msg: Envelope, ctx: Context) -> Step:
    if s.phase is Phase.PLAYING:
        return _next_step(replace(s, phase=Phase.PROMPTED), msg)
    return s, _NOTHING


def _gather_done(s: CallState, msg: Envelope, ctx: Context) -> Step:
    if s.phase is Phase.GATHERING:
        return _next_step(replace(s, phase=Phase.GATHERED), msg)
    return s, _NOTHING


def _stream_ended(s: CallState, msg: Envelope, ctx: Context) -> Step:
    """stream.stopped / stream.failed of the call's own stream: a script waiting for it goes on."""
    if s.stream_done or msg.data.get("step") is not None:
        return s, _NOTHING  # a flow step's stream (the flow's), or a second report
    s = replace(s, stream_done=True)
    if s.flow is not None:
        return s, _NOTHING  # a flow runs the call: its own steps say when it ends
    return _next_step(s, msg)


def _bot_stream(req: Mapping) -> bool:
    """The call's stream is a voice bot's (Twilio's <Connect><Stream>): the call lasts as long as it."""
    return bool((req.get("stream") or {}).get("bidirectional"))


def _ended(s: CallState, msg: Envelope, ctx: Context) -> Step:
    return replace(s, phase=Phase.ENDED), tuple(CancelTimer(name) for name in TIMERS)


def _next_step(s: CallState, cause: Envelope) -> Step:
    """The in-call script: play the prompt, then gather if asked, then hang up."""
    if not s.answered or s.hangup_sent or is_leg(s):
        return s, _NOTHING  # (a dial step's second party has no script: it talks to its parent)
    if s.media_failed:
        return replace(s, hangup_sent=True), (Emit(cause.caused(
            "hangup.requested", {"reason": s.media_failed, "status": "failed"}, step="hangup")),)
    req = s.request
    if s.phase is Phase.IN_PROGRESS and not (req.get("tts") or req.get("audio_url")):
        s = replace(s, phase=Phase.PROMPTED)  # a bot's call: no prompt to play, the bot speaks
    if s.phase is Phase.IN_PROGRESS:  # not played yet
        if s.waiting_for_detection:
            return s, _NOTHING  # the prompt starts on machine detection's result (after the beep)
        if s.audio_ref is None:
            return s, _NOTHING  # answered before the render finished: play as soon as it lands
        gather = req.get("gather")
        return replace(s, phase=Phase.PLAYING), (Emit(cause.caused("play.requested", {
            "audio_ref": s.audio_ref, "barge_in": bool(gather and gather.get("barge_in", True))}, step="play")),)
    if s.phase is Phase.PROMPTED and req.get("gather"):
        g = req["gather"]
        return replace(s, phase=Phase.GATHERING), (Emit(cause.caused("gather.requested", {
            "type": g.get("type", "dtmf"), "num_digits": g.get("num_digits"),
            "finish_on_key": g.get("finish_on_key", "#"), "timeout": g.get("timeout", 5),
            "inter_digit_timeout": g.get("inter_digit_timeout"), "hints": g.get("hints"),
            "language": g.get("language")}, step="gather")),)
    if s.phase in (Phase.PROMPTED, Phase.GATHERED):
        if _bot_stream(req) and not s.stream_done:
            return s, _NOTHING  # the bot has the call until its stream stops
        reason = "stream ended" if _bot_stream(req) else "script finished"
        return replace(s, hangup_sent=True), (Emit(cause.caused("hangup.requested", {"reason": reason},
                                                                step="hangup")),)
    return s, _NOTHING


# --- the inputs, once ------------------------------------------------------------------

class Source(Enum):
    COMMAND = "command"  # voice.call.commands
    EVENT = "event"  # voice.call.events


CallHandler = Callable[[CallState, Envelope, Context], Step]
FlowHandler = Callable[[CallState, Envelope, datetime], Step]


@dataclass(frozen=True, slots=True)
class Route:
    """How one input type is decided.

    `flow` takes the input while the call's flow runs (answered, no hangup sent) and
    may pass it on by returning None; otherwise `call` (the plain script) does; None
    ignores it.
    """

    source: Source
    call: CallHandler | None
    flow: FlowHandler | None = None


_C, _E = Source.COMMAND, Source.EVENT

INPUTS: Mapping[str, Route] = {
    "PlaceCall": Route(_C, _place_call),
    "call.received": Route(_E, _received),
    "call.leg.requested": Route(_E, _leg_requested),
    "HangupCall": Route(_C, _hangup_call),
    "UpdateCall": Route(_C, _update_call),
    "timer.fired": Route(_E, _timer_fired, flow.on_timer),
    "call.ringing": Route(_E, _ringing),
    "call.answered": Route(_E, _answered),
    "machine_detection.completed": Route(_E, _machine_detected),
    "tts.rendered": Route(_E, _media_ready, flow.on_rendered),
    "audio.fetched": Route(_E, _media_ready, flow.on_rendered),
    "tts.failed": Route(_E, _media_failed, flow.on_render_failed),
    "audio.failed": Route(_E, _media_failed, flow.on_render_failed),
    "prompt.finished": Route(_E, _prompt_finished, flow.on_prompt_finished),
    "gather.completed": Route(_E, _gather_done, flow.on_gather_completed),
    "gather.timeout": Route(_E, _gather_done, flow.on_gather_timeout),
    "flow.webhook.answered": Route(_E, None, flow.on_webhook_answered),
    "flow.webhook.failed": Route(_E, None, flow.on_webhook_failed),
    "stream.stopped": Route(_E, _stream_ended, flow.on_stream_ended),
    "stream.failed": Route(_E, _stream_ended, flow.on_stream_ended),
    "dial.answered": Route(_E, None, flow.on_dial_answered),
    "dial.ended": Route(_E, None, flow.on_dial_ended),
    "transfer.completed": Route(_E, None, flow.on_transfer_ended),
    "transfer.failed": Route(_E, None, flow.on_transfer_ended),
    **{t: Route(_E, _ended) for t in TERMINAL_EVENTS},  # call.completed, call.busy, ...: the call is over
}

COMMAND_INPUTS = frozenset(t for t, r in INPUTS.items() if r.source is Source.COMMAND)
EVENT_INPUTS = frozenset(t for t, r in INPUTS.items() if r.source is Source.EVENT)
FLOW_EVENTS = frozenset(t for t, r in INPUTS.items() if r.flow is not None)
