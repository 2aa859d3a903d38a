"""IVR flows inside the call state machine (pure, like decide.py).

The flow engine (services/flows/engine.py) decides which step comes next; this module
turns its actions into gateway instructions and feeds call events back to it. Each
prompt is rendered (tts.requested / audio.requested), played (play.requested), and
its end (prompt.finished) moves the flow on; a gather plays its prompts then asks the
gateway to collect (gather.requested). Media events are matched to the step entry that
asked for them by a tag `<step>#<entry>`, so a repeated menu never reacts to a
stale render of its previous visit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from events import Envelope
from services.lib.flows import engine as fe


def _emit(st, cause: Envelope, d, type: str, data: dict[str, Any]) -> None:
    st["flow_seq"] = st.get("flow_seq", 0) + 1
    d.emit.append(cause.caused(type, data, step=f"flow:{st['flow_seq']}:{type}"))


def _tag(st) -> str:
    f = st["flow"]
    return f"{f['state']['step']}#{f['state']['entered']}"


def start(st, cause: Envelope, d, now: datetime) -> None:
    """Enter the flow's start step (on answer)."""
    state, actions = fe.start(st["flow"]["def"], validate=False)
    _run(st, state, actions, cause, d, now)


def feed(st, inp, cause: Envelope, d, now: datetime) -> None:
    """Give the engine one input and carry out what it decides."""
    state = fe.FlowState.from_dict(st["flow"]["state"])
    state, actions = fe.on_input(st["flow"]["def"], state, inp)
    _run(st, state, actions, cause, d, now)


def _run(st, state: fe.FlowState, actions, cause: Envelope, d, now: datetime) -> None:
    st["flow"] = {**st["flow"], "state": state.to_dict()}
    follow_up = None
    for a in actions:
        if isinstance(a, fe.EnterStep):
            _emit(st, cause, d, "flow.step.entered", {"step": a.name, "kind": a.kind})
        elif isinstance(a, (fe.Say, fe.Play)):
            _media(st, cause, d, [a], then="input")
        elif isinstance(a, fe.Gather):
            st["flow"]["gather"] = {"type": a.type, "num_digits": a.num_digits, "finish_on_key": a.finish_on_key,
                                    "timeout": a.timeout, "inter_digit_timeout": a.inter_digit_timeout,
                                    "hints": list(a.hints) or None, "language": a.language, "step": a.step}
            _media(st, cause, d, list(a.prompt), then="gather", barge_in=a.barge_in)
        elif isinstance(a, fe.Pause):
            d.timers.append(_timer(now, a.seconds, _tag(st)))
        elif isinstance(a, fe.Record):
            if not st.get("recording"):
                st["recording"] = True
                _emit(st, cause, d, "record.requested", {"channels": a.channels,
                                                         "transcribe": bool(st["request"].get("transcribe"))})
            follow_up = fe.PromptFinished(step=a.step)
        elif isinstance(a, fe.CallWebhook):
            # The webhooks service asks the app and answers on the log (flow.webhook.*).
            _emit(st, cause, d, "flow.webhook.requested", {"url": a.url, "step": a.step, "digits": a.digits,
                                                           "speech": a.speech})
        elif isinstance(a, fe.Hangup):
            if not st["hangup_sent"]:
                st["hangup_sent"] = True
                _emit(st, cause, d, "hangup.requested", {"reason": a.reason})
    if follow_up is not None:
        feed(st, follow_up, cause, d, now)


def _timer(now: datetime, seconds: float, tag: str):
    from services.orchestrator.decide import TimerOp

    return TimerOp("flow_pause", now + timedelta(seconds=seconds), token=tag)


def _media(st, cause, d, items: list, *, then: str, barge_in: bool = True) -> None:
    st["flow"]["media"] = {"tag": _tag(st), "queue": [_item(i) for i in items], "then": then,
                           "barge_in": barge_in, "waiting": None}
    _advance(st, cause, d)


def _item(a) -> dict[str, Any]:
    if isinstance(a, fe.Play):
        return {"kind": "play", "url": a.url}
    return {"kind": "say", "text": a.text, "voice": a.voice}


def _advance(st, cause, d) -> None:
    """Start the next prompt item, or finish the step's media part."""
    m = st["flow"]["media"]
    if m["queue"]:
        item = m["queue"][0]
        m["waiting"] = "render"
        if item["kind"] == "say":
            _emit(st, cause, d, "tts.requested", {"text": item["text"], "voice": item["voice"], "speed": 1.0,
                                                  "pitch": 0.0, "step": m["tag"]})
        else:
            _emit(st, cause, d, "audio.requested", {"url": item["url"], "step": m["tag"]})
        return
    m["waiting"] = None
    if m["then"] == "gather":
        _emit(st, cause, d, "gather.requested", dict(st["flow"]["gather"]))
    else:
        feed(st, fe.PromptFinished(step=st["flow"]["state"]["step"]), cause, d, datetime.fromisoformat(
            cause.occurred_at))


def on_event(st, msg: Envelope, d, now: datetime) -> None:
    """A call event while a flow runs."""
    t, data = msg.type, msg.data
    m = st["flow"].get("media") or {}
    tag_ok = data.get("step") == m.get("tag")
    if t in ("tts.rendered", "audio.fetched") and tag_ok and m.get("waiting") == "render":
        m["waiting"] = "play"
        _emit(st, msg, d, "play.requested", {"audio_ref": data["audio_ref"], "barge_in": m["barge_in"],
                                             "step": m["tag"]})
    elif t in ("tts.failed", "audio.failed") and tag_ok and m.get("waiting") == "render":
        m["queue"].pop(0)  # a prompt that cannot be rendered is skipped, the menu goes on
        _advance(st, msg, d)
    elif t == "prompt.finished" and tag_ok and m.get("waiting") == "play":
        m["queue"].pop(0)
        if data.get("interrupted") and m["then"] == "gather":
            m["queue"] = []  # barge-in: the caller is already answering
        _advance(st, msg, d)
    elif t == "gather.completed":
        speech = data.get("speech") or {}
        feed(st, fe.GatherCompleted(digits=data.get("digits", ""),
                                    speech=speech.get("matched_hint") or speech.get("text"),
                                    confidence=speech.get("confidence"),
                                    finished_on_key=data.get("finished_on_key"), step=data.get("step")), msg, d, now)
    elif t == "gather.timeout":
        feed(st, fe.GatherTimeout(digits=data.get("digits", ""), step=data.get("step")), msg, d, now)
    elif t == "flow.webhook.answered":
        feed(st, fe.WebhookAnswered(steps=tuple(data.get("steps") or ()), step=data.get("step")), msg, d, now)
    elif t == "flow.webhook.failed":
        feed(st, fe.WebhookFailed(reason=data.get("reason", ""), step=data.get("step")), msg, d, now)
    elif t == "timer.fired" and data.get("timer") == "flow_pause" and data.get("token") == _tag(st):
        feed(st, fe.PromptFinished(step=st["flow"]["state"]["step"]), msg, d, now)
