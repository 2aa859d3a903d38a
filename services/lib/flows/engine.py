"""The IVR flow interpreter: pure, no I/O, deterministic.

The orchestrator calls `start(flow)` when the call is answered, performs the returned
actions in order, and feeds back what happened with `on_input(flow, state, event)`.
State is a small frozen value (`to_dict`/`from_dict` for storage), so a call's path is
a function of the flow and its inputs, replayable from the event log.

    >>> flow = {"start": "hi", "steps": {"hi": {"kind": "say", "text": "Hello"}}}
    >>> state, actions = start(flow)
    >>> [type(a).__name__ for a in actions]
    ['EnterStep', 'Say']
    >>> state, actions = on_input(flow, state, PromptFinished())
    >>> actions, state.done
    ((Hangup(reason='flow ended'),), True)

Waiting points: say/play/pause/record wait for `PromptFinished` (the action ended), dial for
`DialEnded` (the second call's outcome picks the branch, else `next`), transfer for
`TransferEnded` (completed: the call is over, the flow with it; failed: `on_failed`, else `next`),
gather for `GatherCompleted` / `GatherTimeout`, webhook for `WebhookAnswered` /
`WebhookFailed`, a bidirectional stream for `StreamEnded` (a one-way stream, like record,
is started and followed by `PromptFinished` at once), and answered_by, while machine
detection still runs, for `MachineDetected` (which the state keeps whenever it comes: a
later answered_by step branches at once). Inputs that do not fit the waiting point (or name another step) are
ignored, so a duplicate or late event is harmless.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Union

from events.catalog import DIAL_OUTCOMES
from services.lib.flows.validate import FlowInvalid, check_flow, validate_steps

MAX_STEPS = 1000  # step entries per call; a runaway flow (say, via webhook gotos) hangs up
DEFAULT_VOICE = "en-US-Neural2-F"

# --- actions (what the orchestrator must do) ----------------------------------------


@dataclass(frozen=True, slots=True)
class EnterStep:
    """Record that the call entered a step (becomes a flow.step.entered event)."""

    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class Say:
    text: str
    voice: str = DEFAULT_VOICE


@dataclass(frozen=True, slots=True)
class Play:
    url: str


@dataclass(frozen=True, slots=True)
class Gather:
    """Play `prompt` (interruptible when barge_in) while collecting input."""

    step: str
    type: str = "dtmf"
    num_digits: int | None = None
    finish_on_key: str = "#"
    timeout: float = 5
    inter_digit_timeout: float | None = None
    barge_in: bool = True
    hints: tuple[str, ...] = ()
    language: str | None = None
    prompt: tuple[Union[Say, Play], ...] = ()
    attempt: int = 1  # 2, 3, ... when re-prompted after a timeout


@dataclass(frozen=True, slots=True)
class Record:
    step: str
    channels: str = "mono"
    max_length: int = 60
    beep: bool = True


@dataclass(frozen=True, slots=True)
class Pause:
    seconds: float


@dataclass(frozen=True, slots=True)
class CallWebhook:
    """POST {call_id, step, digits, speech} to url; answer with WebhookAnswered/WebhookFailed."""

    url: str
    step: str
    digits: str | None = None
    speech: str | None = None


@dataclass(frozen=True, slots=True)
class Stream:
    """Open a media stream to `url` (docs/media-streams.md). A bidirectional one waits for
    `StreamEnded` (the bot has the call); a one-way one goes on to `next` at once."""

    step: str
    url: str
    track: str = "inbound"
    bidirectional: bool = False
    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Dial:
    """Call a second party (`to`: E.164 or a SIP URI) and connect the caller to it; answer with
    `DialEnded` once that call is over."""

    step: str
    to: str
    caller_id: str | None = None
    timeout: int = 30
    record: bool = False


@dataclass(frozen=True, slots=True)
class Transfer:
    """Blind-transfer the call to `to` (E.164, tel: or sip: URI); answer with `TransferEnded`."""

    step: str
    to: str


@dataclass(frozen=True, slots=True)
class Hangup:
    reason: str = "flow"


Action = Union[EnterStep, Say, Play, Gather, Record, Pause, CallWebhook, Stream, Dial, Transfer, Hangup]

# --- inputs (what happened) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromptFinished:
    """The current say/play/pause/record ended."""

    step: str | None = None


@dataclass(frozen=True, slots=True)
class GatherCompleted:
    digits: str = ""
    speech: str | None = None
    confidence: float | None = None
    finished_on_key: str | None = None
    step: str | None = None


@dataclass(frozen=True, slots=True)
class GatherTimeout:
    digits: str = ""
    step: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookAnswered:
    steps: tuple[Mapping[str, Any], ...] = ()
    step: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookFailed:
    reason: str = ""
    step: str | None = None


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """A bidirectional stream step's stream stopped or failed."""

    reason: str = ""
    step: str | None = None


@dataclass(frozen=True, slots=True)
class MachineDetected:
    """The call's answering machine detection decided (`answered_by`: human, machine_start, ...)."""

    answered_by: str
    step: str | None = None  # about the call, not a step: never stale


@dataclass(frozen=True, slots=True)
class DialEnded:
    """A dial step's second call ended: `outcome` is completed, busy, no-answer or failed."""

    outcome: str
    step: str | None = None


TRANSFER_OUTCOMES = ("completed", "failed")


@dataclass(frozen=True, slots=True)
class TransferEnded:
    """A transfer step's outcome: `completed` (the far end is connected to the target: the call
    ends, the flow with it) or `failed` (the call is still up)."""

    outcome: str
    step: str | None = None


Input = Union[PromptFinished, GatherCompleted, GatherTimeout, WebhookAnswered, WebhookFailed, StreamEnded,
              MachineDetected, DialEnded, TransferEnded]

# --- state ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowState:
    step: str | None = None
    waiting: str | None = None  # prompt | gather | webhook | stream | detection | dial | transfer | None (finished)
    retries: int = 0  # re-prompts used at the current gather
    entered: int = 0  # step entries so far
    path: tuple[str, ...] = ()
    digits: str | None = None  # last input, passed to webhook steps
    speech: str | None = None
    dynamic: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # steps a webhook answered
    done: bool = False
    answered_by: str | None = None  # machine detection's result, once known
    detecting: bool = False  # machine detection runs and has not answered yet

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = list(self.path)
        d["dynamic"] = {k: dict(v) for k, v in self.dynamic.items()}
        # Machine detection's fields only when set: states without it keep their stored layout.
        if d["answered_by"] is None:
            del d["answered_by"]
        if not d["detecting"]:
            del d["detecting"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FlowState":
        return cls(**{**d, "path": tuple(d.get("path", ())), "dynamic": dict(d.get("dynamic", {}))})


Result = tuple[FlowState, tuple[Action, ...]]


def start(flow: Mapping[str, Any], *, validate: bool = True, answered_by: str | None = None,
          detecting: bool = False, entered: int = 0) -> Result:
    """Enter the flow's start step. `answered_by`: machine detection's result if known;
    `detecting`: it is still running (an answered_by step then waits for `MachineDetected`).
    `entered` counts the step entries the call made before (a call redirected to this flow),
    so its step entries stay unique across flows."""
    if validate:
        check_flow(flow)
    actions: list[Action] = []
    state = _enter(flow, FlowState(answered_by=answered_by, detecting=detecting and answered_by is None,
                                   entered=entered), flow["start"], actions)
    return state, tuple(actions)


def on_input(flow: Mapping[str, Any], state: FlowState, event: Input) -> Result:
    """Advance on one input; unrelated or stale inputs return the state unchanged."""
    if state.done or (event.step is not None and event.step != state.step):
        return state, ()
    actions: list[Action] = []
    step = _lookup(flow, state, state.step)
    if isinstance(event, MachineDetected):
        if state.answered_by is None:
            state = replace(state, answered_by=event.answered_by, detecting=False)
            if state.waiting == "detection":
                state = _enter(flow, state, answered_by_target(step, state.answered_by), actions)
    elif state.waiting == "prompt" and isinstance(event, PromptFinished):
        state = _goto_next(flow, state, step, actions)
    elif state.waiting == "gather" and isinstance(event, GatherCompleted):
        state = _on_gather(flow, replace(state, digits=event.digits, speech=event.speech), step, event, actions)
    elif state.waiting == "gather" and isinstance(event, GatherTimeout):
        state = _on_timeout(flow, replace(state, digits=event.digits or None, speech=None), step, actions)
    elif state.waiting == "webhook" and isinstance(event, WebhookAnswered):
        state = _on_answer(flow, state, step, list(event.steps), actions)
    elif state.waiting == "webhook" and isinstance(event, WebhookFailed):
        state = _goto_next(flow, state, step, actions)
    elif state.waiting == "stream" and isinstance(event, StreamEnded):
        state = _goto_next(flow, state, step, actions)
    elif state.waiting == "dial" and isinstance(event, DialEnded):
        target = ((step or {}).get("branches") or {}).get(event.outcome) or (step or {}).get("next")
        state = _enter(flow, state, target, actions) if target else _finish(state, actions, "flow ended")
    elif state.waiting == "transfer" and isinstance(event, TransferEnded):
        if event.outcome == "completed":
            state = replace(state, waiting=None, done=True)  # the carrier ends the call: nothing to hang up
        else:
            target = (step or {}).get("on_failed") or (step or {}).get("next")
            state = _enter(flow, state, target, actions) if target else _finish(state, actions, "transfer failed")
    return state, tuple(actions)


# --- internals -----------------------------------------------------------------------

def _lookup(flow: Mapping[str, Any], state: FlowState, name: str | None) -> Mapping[str, Any] | None:
    if name is None:
        return None
    return state.dynamic.get(name) or flow["steps"].get(name)


def _finish(state: FlowState, actions: list[Action], reason: str) -> FlowState:
    actions.append(Hangup(reason))
    return replace(state, waiting=None, done=True)


def _goto_next(flow, state: FlowState, step, actions: list[Action]) -> FlowState:
    nxt = (step or {}).get("next")
    if not nxt:
        return _finish(state, actions, "flow ended")
    return _enter(flow, state, nxt, actions)


def _prompt(flow, item: Mapping[str, Any]) -> Say | Play:
    if item["kind"] == "play":
        return Play(item["url"])
    return Say(item["text"], item.get("voice") or flow.get("voice") or DEFAULT_VOICE)


def _enter(flow, state: FlowState, name: str, actions: list[Action], retries: int = 0) -> FlowState:
    """Enter `name` (following gotos) until a step that waits, or the end."""
    while True:
        if state.entered >= MAX_STEPS:
            return _finish(state, actions, "step limit reached")
        step = _lookup(flow, state, name)
        if step is None:
            return _finish(state, actions, f"no step {name!r}")
        kind = step["kind"]
        actions.append(EnterStep(name, kind))
        state = replace(state, step=name, retries=retries, entered=state.entered + 1, path=state.path + (name,))
        if kind == "say":
            actions.append(_prompt(flow, step))
            return replace(state, waiting="prompt")
        if kind == "play":
            actions.append(Play(step["url"]))
            return replace(state, waiting="prompt")
        if kind == "pause":
            actions.append(Pause(float(step["seconds"])))
            return replace(state, waiting="prompt")
        if kind == "record":
            actions.append(Record(name, step.get("channels", "mono"), int(step.get("max_length", 60)),
                                  bool(step.get("beep", True))))
            return replace(state, waiting="prompt")
        if kind == "gather":
            prompt = step.get("prompt") or ()
            items = (prompt,) if isinstance(prompt, Mapping) else tuple(prompt)
            actions.append(Gather(
                step=name, type=step.get("type", "dtmf"), num_digits=step.get("num_digits"),
                finish_on_key=step.get("finish_on_key", "#"), timeout=step.get("timeout", 5),
                inter_digit_timeout=step.get("inter_digit_timeout"), barge_in=step.get("barge_in", True),
                hints=tuple(step.get("hints") or ()), language=step.get("language"),
                prompt=tuple(_prompt(flow, i) for i in items), attempt=retries + 1))
            return replace(state, waiting="gather")
        if kind == "webhook":
            actions.append(CallWebhook(step["url"], name, state.digits, state.speech))
            return replace(state, waiting="webhook")
        if kind == "stream":
            bidirectional = bool(step.get("bidirectional", False))
            actions.append(Stream(name, step["url"], step.get("track", "inbound"), bidirectional,
                                  dict(step.get("parameters") or {})))
            return replace(state, waiting="stream" if bidirectional else "prompt")
        if kind == "dial":
            actions.append(Dial(name, step["to"], step.get("caller_id"), int(step.get("timeout", 30)),
                                bool(step.get("record", False))))
            return replace(state, waiting="dial")
        if kind == "transfer":
            actions.append(Transfer(name, step["to"]))
            return replace(state, waiting="transfer")
        if kind == "goto":
            name, retries = step["step"], 0
            continue
        if kind == "answered_by":
            if state.detecting:
                return replace(state, waiting="detection")
            name, retries = answered_by_target(step, state.answered_by), 0
            continue
        if kind == "hangup":
            return _finish(state, actions, "hangup step")
        return _finish(state, actions, f"unknown step kind {kind!r}")


def answered_by_target(step: Mapping[str, Any], answered_by: str | None) -> str:
    """An answered_by step's target: the exact value, then `machine` for any machine_*, then `default`."""
    branches = step.get("branches") or {}
    if answered_by in branches:
        return branches[answered_by]
    if answered_by and answered_by.startswith("machine") and "machine" in branches:
        return branches["machine"]
    return step["default"]


_SPOKEN_DIGITS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                  "six": "6", "seven": "7", "eight": "8", "nine": "9", "star": "*", "pound": "#", "hash": "#"}
_DIGIT_KEY = re.compile(r"^[0-9*#]+$")


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def match_branch(branches: Mapping[str, str], digits: str, speech: str | None) -> str | None:
    """The target for this input: exact digits first, then spoken digits, then keywords (longest first)."""
    if digits and digits in branches:
        return branches[digits]
    if not speech:
        return None
    words = _words(speech)
    spoken = "".join(_SPOKEN_DIGITS.get(w, "") for w in words)
    if spoken and len(spoken) == len(words) and spoken in branches:
        return branches[spoken]
    keywords = sorted((k for k in branches if not _DIGIT_KEY.match(k)), key=lambda k: -len(_words(k)))
    for k in keywords:
        kw = _words(k)
        if kw and any(words[i:i + len(kw)] == kw for i in range(len(words) - len(kw) + 1)):
            return branches[k]
    return None


def _on_gather(flow, state: FlowState, step, event: GatherCompleted, actions: list[Action]) -> FlowState:
    target = match_branch(step.get("branches") or {}, event.digits, event.speech)
    if target is None:
        target = step.get("default") or step.get("next")  # `next`: a gather the app answered with
    if target is not None:
        return _enter(flow, state, target, actions)
    # Input that matches nothing and no default: ask again, like a timeout, then give up.
    if state.retries < step.get("max_retries", 2):
        return _enter(flow, state, state.step, actions, retries=state.retries + 1)
    return _finish(state, actions, "no valid input")


def _on_timeout(flow, state: FlowState, step, actions: list[Action]) -> FlowState:
    if state.retries < step.get("max_retries", 2):
        return _enter(flow, state, state.step, actions, retries=state.retries + 1)
    target = step.get("on_timeout") or step.get("default") or step.get("next")
    if target is None:
        return _finish(state, actions, "no input")
    return _enter(flow, state, target, actions)


def _on_answer(flow, state: FlowState, step, steps: list[Any], actions: list[Action]) -> FlowState:
    """Run the app's steps (named <webhook step>.<i>, chained), then the webhook step's `next`."""
    known = set(flow["steps"])
    if validate_steps(steps, known):
        return _goto_next(flow, state, step, actions)  # a bad answer is a failed webhook
    if not steps:
        return _goto_next(flow, state, step, actions)
    base = state.step
    names = [f"{base}.{i}" for i in range(len(steps))]
    after = (step or {}).get("next")
    dynamic = {k: v for k, v in state.dynamic.items() if not k.startswith(base + ".")}
    for i, (n, s) in enumerate(zip(names, steps)):
        chained = dict(s)
        if chained.get("kind") not in ("goto", "hangup"):
            chained["next"] = names[i + 1] if i + 1 < len(names) else after
            if chained["next"] is None:
                del chained["next"]
        dynamic[n] = chained
    return _enter(flow, replace(state, dynamic=dynamic), names[0], actions)


__all__ = [
    "Action", "CallWebhook", "DIAL_OUTCOMES", "Dial", "DialEnded", "EnterStep", "FlowInvalid",
    "FlowState", "Gather", "GatherCompleted", "GatherTimeout",
    "Hangup", "Input", "MachineDetected", "Pause", "Play", "PromptFinished", "Record", "Say", "Stream", "StreamEnded",
    "TRANSFER_OUTCOMES", "Transfer", "TransferEnded",
    "WebhookAnswered", "WebhookFailed",
    "answered_by_target", "match_branch", "on_input", "start",
]
