"""IVR flows inside the call state machine (pure, like decide.py).

The flow engine (services/lib/flows/engine.py) decides which step comes next; this module
turns its actions into gateway instructions and feeds call events back to it. Each
prompt is rendered (tts.requested / audio.requested), played (play.requested), and
its end (prompt.finished) moves the flow on; a gather plays its prompts then asks the
gateway to collect (gather.requested). Media events are matched to the step entry that
asked for them by a tag `<step>#<entry>`, so a repeated menu never reacts to a
stale render of its previous visit.

Every function takes a `CallState` and returns `(new state, outputs)`; nothing given
is changed (the engine's own state is a frozen value as well).
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from events import Envelope, derive_id
from services.lib.flows import engine as fe
from services.orchestrator.outputs import Emit, Output, StartTimer
from services.orchestrator.state import CallState, FlowMedia, GatherSpec, Prompt

Step = tuple[CallState, tuple[Output, ...]]
_NOTHING: tuple[Output, ...] = ()


def _emit(s: CallState, cause: Envelope, type: str, data: dict[str, Any]) -> tuple[CallState, Emit]:
    seq = s.flow.seq + 1
    return replace(s, flow=replace(s.flow, seq=seq)), Emit(cause.caused(type, data, step=f"flow:{seq}:{type}"))


def _with_media(s: CallState, media: FlowMedia) -> CallState:
    return replace(s, flow=replace(s.flow, media=media))


def start(s: CallState, cause: Envelope, now: datetime, entered: int = 0) -> Step:
    """Enter the flow's start step (on answer, or on machine detection's result when the call waits
    for it, or on a redirect: `entered` step entries before)."""
    engine, actions = fe.start(s.flow.definition, validate=False, answered_by=s.answered_by, detecting=s.detecting,
                               entered=entered)
    return _run(s, engine, actions, cause, now)


def _feed(s: CallState, inp: fe.Input, cause: Envelope, now: datetime) -> Step:
    """Give the engine one input and carry out what it decides."""
    engine, actions = fe.on_input(s.flow.definition, s.flow.engine_state, inp)
    return _run(s, engine, actions, cause, now)


def _run(s: CallState, engine: fe.FlowState, actions: tuple[fe.Action, ...], cause: Envelope, now: datetime) -> Step:
    s = replace(s, flow=replace(s.flow, engine=engine))
    out: list[Output] = []
    follow_up = None
    for a in actions:
        if isinstance(a, fe.EnterStep):
            s, o = _emit(s, cause, "flow.step.entered", {"step": a.name, "kind": a.kind})
            out.append(o)
        elif isinstance(a, (fe.Say, fe.Play)):
            s, more = _media(s, cause, (a,), then="input")
            out += more
        elif isinstance(a, fe.Gather):
            spec = GatherSpec(a.type, a.num_digits, a.finish_on_key, a.timeout, a.inter_digit_timeout,
                              tuple(a.hints) or None, a.language, a.step)
            s, more = _media(replace(s, flow=replace(s.flow, gather=spec)), cause, a.prompt, then="gather",
                             barge_in=a.barge_in)
            out += more
        elif isinstance(a, fe.Pause):
            out.append(StartTimer("flow_pause", now + timedelta(seconds=a.seconds), token=s.flow.tag))
        elif isinstance(a, fe.Record):
            if not s.recording:
                s, o = _emit(replace(s, recording=True), cause, "record.requested",
                             {"channels": a.channels, "transcribe": bool(s.request.get("transcribe")),
                              **({"language": lang} if (lang := s.request.get("transcribe_language")) else {})})
                out.append(o)
            follow_up = fe.PromptFinished(step=a.step)
        elif isinstance(a, fe.CallWebhook):
            # The webhooks service asks the app and answers on the log (flow.webhook.*).
            s, o = _emit(s, cause, "flow.webhook.requested", {"url": a.url, "step": a.step, "digits": a.digits,
                                                              "speech": a.speech})
            out.append(o)
        elif isinstance(a, fe.Stream):
            s, o = _emit(s, cause, "stream.requested", {"url": a.url, "track": a.track,
                                                        "bidirectional": a.bidirectional,
                                                        "parameters": dict(a.parameters), "step": a.step})
            out.append(o)
            if not a.bidirectional:
                follow_up = fe.PromptFinished(step=a.step)  # a one-way stream runs beside the flow
        elif isinstance(a, fe.Dial):
            s, more = _dial(s, cause, a)
            out += more
        elif isinstance(a, fe.Transfer):
            if s.request.get("carrier", "sandbox") == "sandbox":
                s, more = _bridged_transfer(s, cause, a)
                out += more
            else:  # the gateway carries it out (SIP: a REFER) and reports transfer.completed / .failed
                s, o = _emit(s, cause, "transfer.requested", {"to": a.to, "step": a.step, "tag": s.flow.tag})
                out.append(o)
        elif isinstance(a, fe.Hangup):
            if not s.hangup_sent:
                s, o = _emit(replace(s, hangup_sent=True), cause, "hangup.requested", {"reason": a.reason})
                out.append(o)
    if follow_up is not None:
        s, more = _feed(s, follow_up, cause, now)
        out += more
    return s, tuple(out)


def leg_id(parent_call_id: str, tag: str, partitions: int = 0) -> str:
    """The id of the second call a dial step entry places: derived, so a re-decided input names
    the same call. Given the events topic's partition count, the first candidate that lands on
    the parent's partition: the leg's instructions then go to the gateway holding the parent,
    where the relay between the two calls is (two deques on one event loop), however many
    gateways share the calls."""
    from services.common.kafka import key_on, partition_of

    tries = itertools.count()

    def candidate() -> str:
        i = next(tries)
        return "call_" + uuid.UUID(derive_id(parent_call_id, f"dial:{tag}" + (f"#{i}" if i else ""))).hex[:24]

    if partitions <= 1:
        return candidate()
    return key_on(candidate, {partition_of(parent_call_id.encode(), partitions)}, partitions)


def caller_id(s: CallState, given: str | None) -> str:
    """What the second party sees: the step's caller_id, else the call's own number (its `from`
    when we placed it, its `to` when it came in)."""
    req = s.request
    return given or (req.get("to") if req.get("direction") == "inbound" else req.get("from")) or ""


def _dual(s: CallState) -> dict[str, Any]:
    req = s.request
    return {"channels": "dual", "transcribe": bool(req.get("transcribe")),
            **({"language": lang} if (lang := req.get("transcribe_language")) else {})}


def _dial(s: CallState, cause: Envelope, a: fe.Dial) -> Step:
    """A dial step: `dial.started` on this call, and `call.leg.requested` on the second call's
    own id, which the orchestrator then decides as that call's first input (decide._leg_requested)."""
    tag = s.flow.tag
    child, shown = leg_id(s.call_id, tag, s.partitions), caller_id(s, a.caller_id)
    s, started = _emit(s, cause, "dial.started", {"child_call_id": child, "to": a.to, "from": shown,
                                                  "timeout": a.timeout, "record": a.record, "step": a.step,
                                                  "tag": tag})
    leg_data = {"to": a.to, "from": shown, "timeout": a.timeout, "step": a.step, "tag": tag}
    if a.record:
        leg_data["record"] = _dual(s)  # the gateway records the parent from the instant they connect
    s, leg = _leg(s, cause, child, leg_data)
    return s, (started, leg)


def _leg(s: CallState, cause: Envelope, child: str, data: dict[str, Any]) -> tuple[CallState, Emit]:
    """`call.leg.requested` on the second call's own id (decide._leg_requested places it)."""
    s, leg = _emit(s, cause, "call.leg.requested", {"parent_call_id": s.call_id,
                                                    "carrier": s.request.get("carrier", "sandbox"), **data})
    return s, Emit(replace(leg.event, call_id=child))


def transfer_target(to: str) -> str:
    """What a bridged transfer dials: a ``tel:`` URI's number (E.164 as a dial step takes it),
    anything else as given."""
    return to[4:].split(";")[0] if to.lower().startswith("tel:") else to


def _bridged_transfer(s: CallState, cause: Envelope, a: fe.Transfer) -> Step:
    """A sandbox call's transfer step. No far end here can call the target itself, as a SIP phone
    does on a REFER, so the target is dialled as a second call (its own id, timeline and
    `parent_call_id`, like a dial step's) and the transferee is bridged to it by the gateway;
    the outcome is reported as a REFER's: `transfer.completed` when the target answers (the flow
    is over; the call stays up, bridged, until either side hangs up), `transfer.failed` with the
    SIP status its end maps to (`on_failed`, else `next`)."""
    tag = s.flow.tag
    child = leg_id(s.call_id, tag, s.partitions)
    s, started = _emit(s, cause, "transfer.started", {"to": a.to, "refer_to": None, "child_call_id": child,
                                                      "step": a.step, "tag": tag})
    s, leg = _leg(s, cause, child, {"to": transfer_target(a.to), "from": caller_id(s, None),
                                    "timeout": int(s.request.get("timeout", 30)), "step": a.step, "tag": tag,
                                    "transfer": True})
    return s, (started, leg)


def _media(s: CallState, cause: Envelope, items: tuple[Prompt, ...], *, then: str, barge_in: bool = True) -> Step:
    return _advance(_with_media(s, FlowMedia(s.flow.tag, tuple(items), then, barge_in)), cause)


def _advance(s: CallState, cause: Envelope) -> Step:
    """Start the next prompt item, or finish the step's media part."""
    m = s.flow.media
    if m.queue:
        item = m.queue[0]
        s = _with_media(s, replace(m, waiting="render"))
        if type(item) is fe.Say:
            s, o = _emit(s, cause, "tts.requested", {"text": item.text, "voice": item.voice, "speed": 1.0,
                                                     "pitch": 0.0, "step": m.tag})
        else:
            s, o = _emit(s, cause, "audio.requested", {"url": item.url, "step": m.tag})
        return s, (o,)
    s = _with_media(s, replace(m, waiting=None))
    if m.then == "gather":
        s, o = _emit(s, cause, "gather.requested", s.flow.gather.to_json())
        return s, (o,)
    return _feed(s, fe.PromptFinished(step=s.flow.engine_state.step), cause, datetime.fromisoformat(cause.occurred_at))


# --- call events while a flow runs (the flow handlers of decide.INPUTS) ------------------

def _current(s: CallState, msg: Envelope, waiting: str) -> FlowMedia | None:
    """The step's media, if `msg` is about its current prompt and the prompt is at `waiting`."""
    m = s.flow.media
    if m is None or msg.data.get("step") != m.tag or m.waiting != waiting:
        return None
    return m


def on_rendered(s: CallState, msg: Envelope, now: datetime) -> Step:
    """tts.rendered / audio.fetched: play the prompt."""
    m = _current(s, msg, "render")
    if m is None:
        return s, _NOTHING
    s, o = _emit(_with_media(s, replace(m, waiting="play")), msg, "play.requested",
                 {"audio_ref": msg.data["audio_ref"], "barge_in": m.barge_in, "step": m.tag})
    return s, (o,)


def on_render_failed(s: CallState, msg: Envelope, now: datetime) -> Step:
    """tts.failed / audio.failed: a prompt that cannot be rendered is skipped, the menu goes on."""
    m = _current(s, msg, "render")
    if m is None:
        return s, _NOTHING
    return _advance(_with_media(s, replace(m, queue=m.queue[1:])), msg)


def on_prompt_finished(s: CallState, msg: Envelope, now: datetime) -> Step:
    m = _current(s, msg, "play")
    if m is None:
        return s, _NOTHING
    queue = m.queue[1:]
    if msg.data.get("interrupted") and m.then == "gather":
        queue = ()  # barge-in: the caller is already answering
    return _advance(_with_media(s, replace(m, queue=queue)), msg)


def on_gather_completed(s: CallState, msg: Envelope, now: datetime) -> Step:
    data = msg.data
    speech = data.get("speech") or {}
    return _feed(s, fe.GatherCompleted(digits=data.get("digits", ""),
                                       speech=speech.get("matched_hint") or speech.get("text"),
                                       confidence=speech.get("confidence"),
                                       finished_on_key=data.get("finished_on_key"), step=data.get("step")), msg, now)


def on_gather_timeout(s: CallState, msg: Envelope, now: datetime) -> Step:
    return _feed(s, fe.GatherTimeout(digits=msg.data.get("digits", ""), step=msg.data.get("step")), msg, now)


def on_webhook_answered(s: CallState, msg: Envelope, now: datetime) -> Step:
    return _feed(s, fe.WebhookAnswered(steps=tuple(msg.data.get("steps") or ()), step=msg.data.get("step")), msg,
                 now)


def on_webhook_failed(s: CallState, msg: Envelope, now: datetime) -> Step:
    return _feed(s, fe.WebhookFailed(reason=msg.data.get("reason", ""), step=msg.data.get("step")), msg, now)


def on_stream_ended(s: CallState, msg: Envelope, now: datetime) -> Step | None:
    """stream.stopped / stream.failed of a stream step: a bidirectional step goes on to `next`.
    The call's own stream (no step) is the call script's: None passes it on."""
    if msg.data.get("step") is None:
        return None
    return _feed(s, fe.StreamEnded(reason=msg.data.get("reason", ""), step=msg.data["step"]), msg, now)


def _dialing(s: CallState, msg: Envelope) -> bool:
    """`msg` (dial.answered / dial.ended) is about the dial step the flow waits at."""
    e = s.flow.engine_state
    return e.waiting == "dial" and msg.data.get("tag") == s.flow.tag


def on_dial_answered(s: CallState, msg: Envelope, now: datetime) -> Step:
    """The second party answered (the gateway connected the two calls): a step with `record`
    records the conversation from here, dual-channel (the caller left, the second party right).
    The gateway started that recording at the instant it connected them; `record.requested` makes
    it the call's recording here too (recording controls, a later record step)."""
    if msg.data.get("transfer"):
        return _transfer_answered(s, msg, now)
    if not _dialing(s, msg) or s.recording:
        return s, _NOTHING
    if not _step_def(s, msg.data.get("step")).get("record"):
        return s, _NOTHING
    s, o = _emit(replace(s, recording=True), msg, "record.requested", _dual(s))
    return s, (o,)


def on_dial_ended(s: CallState, msg: Envelope, now: datetime) -> Step:
    """The second call ended: the flow goes on at the outcome's branch (else `next`)."""
    if msg.data.get("transfer"):
        return _transfer_leg_ended(s, msg, now)
    if not _dialing(s, msg):
        return s, _NOTHING  # another entry's dial (a redelivery, or a step entered again)
    return _feed(s, fe.DialEnded(outcome=msg.data["outcome"], step=msg.data.get("step")), msg, now)


# A bridged transfer's leg ending before it answered, as the SIP status a REFER's NOTIFY would carry.
_TRANSFER_FAILURES = {"busy": (486, "Busy Here"), "no-answer": (480, "Temporarily Unavailable"),
                      "failed": (503, "Service Unavailable")}


def _transferring(s: CallState, msg: Envelope) -> bool:
    e = s.flow.engine_state if s.flow is not None else None
    return e is not None and e.waiting == "transfer" and msg.data.get("tag") == s.flow.tag


def _step_def(s: CallState, step: str | None) -> dict[str, Any]:
    """A step of the running flow by name: one a webhook's answer added, else the definition's."""
    return s.flow.engine_state.dynamic.get(step) or s.flow.definition["steps"].get(step) or {}


def _transfer_to(s: CallState, step: str | None) -> str:
    return _step_def(s, step).get("to", "")


def _transfer_answered(s: CallState, msg: Envelope, now: datetime) -> Step:
    """A bridged transfer's target answered: the transfer completed (the flow is over)."""
    if not _transferring(s, msg):
        return s, _NOTHING  # a redelivery, or another entry's
    step = msg.data.get("step")
    s, done = _emit(s, msg, "transfer.completed", {"to": _transfer_to(s, step), "code": 200, "reason": "OK",
                                                   "step": step, "tag": msg.data["tag"]})
    s, more = _feed(s, fe.TransferEnded(outcome="completed", step=step), msg, now)
    return s, (done, *more)


def _transfer_leg_ended(s: CallState, msg: Envelope, now: datetime) -> Step:
    """A bridged transfer's leg ended. Before it answered: the transfer failed, and the flow goes
    on. After: the transferred conversation is over, and this call hangs up too (the transferee
    stays only as long as the party it was handed to)."""
    if _transferring(s, msg):
        step, outcome = msg.data.get("step"), msg.data["outcome"]
        code, text = _TRANSFER_FAILURES.get(outcome, (503, "Service Unavailable"))
        s, failed = _emit(s, msg, "transfer.failed", {"to": _transfer_to(s, step), "code": code,
                                                      "reason": msg.data.get("reason") or text,
                                                      "step": step, "tag": msg.data["tag"]})
        s, more = _feed(s, fe.TransferEnded(outcome="failed", step=step), msg, now)
        return s, (failed, *more)
    e = s.flow.engine_state if s.flow is not None else None
    if e is None or not e.done or msg.data.get("outcome") != "completed" or s.hangup_sent:
        return s, _NOTHING
    s, o = _emit(replace(s, hangup_sent=True), msg, "hangup.requested", {"reason": "transfer"})
    return s, (o,)


def on_transfer_ended(s: CallState, msg: Envelope, now: datetime) -> Step:
    """transfer.completed (the call ends on its own: the flow is over) or transfer.failed (the flow
    goes on at `on_failed`, else `next`), of the transfer step entry the flow waits at."""
    e = s.flow.engine_state
    if e.waiting != "transfer" or msg.data.get("tag") != s.flow.tag:
        return s, _NOTHING  # another entry's transfer (a redelivery, or a step entered again)
    outcome = "completed" if msg.type == "transfer.completed" else "failed"
    return _feed(s, fe.TransferEnded(outcome=outcome, step=msg.data.get("step")), msg, now)


def on_machine_detected(s: CallState, msg: Envelope, now: datetime) -> Step:
    """machine_detection.completed while the flow runs (async_amd): an answered_by step may be waiting."""
    return _feed(s, fe.MachineDetected(answered_by=s.answered_by), msg, now)


def on_timer(s: CallState, msg: Envelope, now: datetime) -> Step | None:
    """A pause step's timer: the pause is over. Other timers (the call's maximum
    duration) are the call script's: None passes them on."""
    if msg.data.get("timer") == "flow_pause":
        if msg.data.get("token") == s.flow.tag:
            return _feed(s, fe.PromptFinished(step=s.flow.engine_state.step), msg, now)
        return s, _NOTHING  # a stale pause timer
    return None
