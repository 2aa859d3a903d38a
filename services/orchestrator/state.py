"""A call's state in the orchestrator: an immutable value, stored as JSON in `orch_calls`.

`CallState` is frozen; every transition builds a new one (`dataclasses.replace`), so a
decision can never change the state it was given. The phase says how far the call's
script got; the only facts kept beside it are the ones the phase cannot tell:

- `hangup_sent`: a hangup went to the gateway (it can happen in any live phase: ring
  timeout, API hangup, media failure, end of script or flow);
- `recording`: recording was requested (on answer, or by a flow `record` step);
- `stream_done`: the call's own media stream (the `stream` option) stopped or failed.
- `updates`: what changes to the live call (UpdateCall) left pending: update audio queued,
  the script's hangup held until it has played, the recording's pause/stop, the updates
  already decided (a command redelivered is not applied twice).

Stored form (`to_json` / `from_json`) is the layout the dict-based state machine wrote,
so rows written before this type existed load unchanged. The booleans that layout had
and the phase now implies (answered, dialed, played, gathering, ended) are ignored on
load, and still written for a live call, so a reader of that layout (the previous
release, say) can carry on with a row this one wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Mapping, Union

from services.lib.flows import engine as fe


class Phase(StrEnum):
    """How far the call got. Values are the stored strings."""

    NEW = "new"  # no PlaceCall decided yet
    REJECTED = "rejected"  # PlaceCall failed validation (final)
    QUEUED = "queued"  # accepted, waiting for its pacing slot
    DIALING = "dialing"  # dial.requested sent
    RINGING = "ringing"
    IN_PROGRESS = "in-progress"  # answered; waiting for the prompt, or a flow runs
    PLAYING = "playing"  # prompt play.requested sent
    PROMPTED = "prompted"  # prompt finished
    GATHERING = "gathering"  # gather.requested sent
    GATHERED = "gathered"  # gather completed or timed out
    UPDATED = "updated"  # an update's audio replaced the script: it hangs up once that has played
    ENDED = "ended"  # a terminal event (or the orchestrator) ended it (final)


FINAL = frozenset({Phase.REJECTED, Phase.ENDED})
DIALED = frozenset({Phase.DIALING, Phase.RINGING, Phase.IN_PROGRESS, Phase.PLAYING, Phase.PROMPTED, Phase.GATHERING,
                    Phase.GATHERED, Phase.UPDATED})
ANSWERED = frozenset({Phase.IN_PROGRESS, Phase.PLAYING, Phase.PROMPTED, Phase.GATHERING, Phase.GATHERED,
                      Phase.UPDATED})
PLAYED = frozenset({Phase.PLAYING, Phase.PROMPTED, Phase.GATHERING, Phase.GATHERED})

Prompt = Union[fe.Say, fe.Play]


@dataclass(frozen=True, slots=True)
class FlowMedia:
    """The prompts of the flow step being played, one render + play at a time."""

    tag: str  # `<step>#<entry>`: media events for another entry are stale
    queue: tuple[Prompt, ...]  # not yet finished, the current one first
    then: str  # "input" (the step waits for the prompt's end) | "gather" (collect after it)
    barge_in: bool = True
    waiting: str | None = None  # "render" | "play" | None (done)

    def to_json(self) -> dict[str, Any]:
        return {"tag": self.tag, "queue": [_prompt_json(p) for p in self.queue], "then": self.then,
                "barge_in": self.barge_in, "waiting": self.waiting}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "FlowMedia":
        return cls(d["tag"], tuple(_prompt_from(p) for p in d["queue"]), d["then"], d.get("barge_in", True),
                   d.get("waiting"))


def _prompt_json(p: Prompt) -> dict[str, Any]:
    if type(p) is fe.Play:
        return {"kind": "play", "url": p.url}
    return {"kind": "say", "text": p.text, "voice": p.voice}


def _prompt_from(d: Mapping[str, Any]) -> Prompt:
    if d["kind"] == "play":
        return fe.Play(d["url"])
    return fe.Say(d["text"], d["voice"])


@dataclass(frozen=True, slots=True)
class GatherSpec:
    """What a flow gather step collects: the `gather.requested` payload."""

    type: str = "dtmf"
    num_digits: int | None = None
    finish_on_key: str = "#"
    timeout: float = 5
    inter_digit_timeout: float | None = None
    hints: tuple[str, ...] | None = None
    language: str | None = None
    step: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "num_digits": self.num_digits, "finish_on_key": self.finish_on_key,
                "timeout": self.timeout, "inter_digit_timeout": self.inter_digit_timeout,
                "hints": list(self.hints) if self.hints is not None else None, "language": self.language,
                "step": self.step}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "GatherSpec":
        hints = d.get("hints")
        return cls(d.get("type", "dtmf"), d.get("num_digits"), d.get("finish_on_key", "#"), d.get("timeout", 5),
                   d.get("inter_digit_timeout"), tuple(hints) if hints is not None else None, d.get("language"),
                   d.get("step"))


def record_options(req: Mapping[str, Any]) -> dict[str, Any]:
    """How the call's request asks to record it (`record.requested`, `dial.requested`'s record)."""
    opts = {"channels": req.get("recording_channels", "mono"), "transcribe": bool(req.get("transcribe"))}
    if req.get("transcribe_language"):
        opts["language"] = req["transcribe_language"]
    return opts


_NOT_STARTED = fe.FlowState()
_ENGINE_FIELDS = tuple(fe.FlowState.__dataclass_fields__)


def _engine_json(e: fe.FlowState) -> dict[str, Any]:
    """`FlowState.to_dict()` without `dataclasses.asdict`'s deep copy (the result is
    serialised at once): a third of a flow call's decision time otherwise."""
    d = {name: getattr(e, name) for name in _ENGINE_FIELDS}
    d["path"] = list(e.path)
    d["dynamic"] = {k: dict(v) for k, v in e.dynamic.items()}
    # Machine detection's fields only when set: a flow call without it stores the layout of before.
    if d["answered_by"] is None:
        del d["answered_by"]
    if not d["detecting"]:
        del d["detecting"]
    return d


@dataclass(frozen=True, slots=True)
class FlowRun:
    """An IVR flow attached to the call: the definition as run, and how far it got."""

    definition: Mapping[str, Any]  # the flow document (a stored flow may change later); never mutated
    engine: fe.FlowState | None = None  # the flow engine's state; None until the call is answered
    media: FlowMedia | None = None
    gather: GatherSpec | None = None
    seq: int = 0  # outputs the flow emitted so far; part of each output's derived id

    @property
    def engine_state(self) -> fe.FlowState:
        return self.engine if self.engine is not None else _NOT_STARTED

    @property
    def tag(self) -> str:
        """The current step entry, `<step>#<entry>`, that media and pause timers are matched to."""
        e = self.engine_state
        return f"{e.step}#{e.entered}"

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"def": self.definition, "state": _engine_json(self.engine) if self.engine is not None else {}}
        if self.media is not None:
            d["media"] = self.media.to_json()
        if self.gather is not None:
            d["gather"] = self.gather.to_json()
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any], seq: int = 0) -> "FlowRun":
        engine, media, gather = d.get("state"), d.get("media"), d.get("gather")
        return cls(d["def"], fe.FlowState.from_dict(engine) if engine else None,
                   FlowMedia.from_json(media) if media is not None else None,
                   GatherSpec.from_json(gather) if gather is not None else None, seq)


@dataclass(frozen=True, slots=True)
class UpdatePlay:
    """Audio an update asked to play: rendered (`audio_ref`), then sent to the gateway in order."""

    tag: str  # `update:<UpdateCall id>`, the step its media events carry
    audio_ref: str | None = None
    sent: bool = False


MAX_APPLIED = 32  # update ids remembered per call, to recognise a redelivered UpdateCall


@dataclass(frozen=True, slots=True)
class Updates:
    """What the call's updates (UpdateCall) left pending; empty for a call never updated."""

    plays: tuple[UpdatePlay, ...] = ()
    held_hangup: Mapping[str, Any] | None = None  # the script's hangup, waiting for the update audio
    recording: str = ""  # "" (as started) | "paused" | "stopped"
    applied: tuple[str, ...] = ()  # the last MAX_APPLIED UpdateCall ids decided

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"applied": list(self.applied)}
        if self.plays:
            d["plays"] = [{"tag": p.tag, "audio_ref": p.audio_ref, "sent": p.sent} for p in self.plays]
        if self.held_hangup is not None:
            d["held_hangup"] = self.held_hangup
        if self.recording:
            d["recording"] = self.recording
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Updates":
        return cls(tuple(UpdatePlay(p["tag"], p.get("audio_ref"), bool(p.get("sent"))) for p in d.get("plays", ())),
                   d.get("held_hangup"), d.get("recording", ""), tuple(d.get("applied", ())))


NO_UPDATES = Updates()


@dataclass(frozen=True, slots=True)
class CallState:
    """One call as the orchestrator knows it. Immutable: transitions return a new value."""

    call_id: str
    account_id: str
    phase: Phase = Phase.NEW
    request: Mapping[str, Any] = field(default_factory=dict)  # the PlaceCall payload (+ created_at); never mutated
    audio_ref: str | None = None  # the rendered/fetched prompt, once it is ready
    media_failed: str | None = None  # why the prompt could not be rendered/fetched
    hangup_sent: bool = False
    recording: bool = False
    seen: int = 0  # inputs decided for this call
    flow: FlowRun | None = None
    stream_done: bool = False  # the call's own media stream stopped or failed (a bot's call then ends)
    answered_by: str | None = None  # machine detection's result (machine_detection.completed)
    updates: Updates = NO_UPDATES
    # The call's trace (W3C traceparent of its first traced input): what a timer's input,
    # which carries none, continues (docs/architecture.md, "Following a call").
    traceparent: str | None = None
    tracestate: str | None = None  # the tracestate that came with it (passed on unchanged)
    # Not stored: the events topic's partition count, as the I/O edge gives it to each decision
    # (decide's `partitions`), so a dial step names its second call on this call's partition.
    partitions: int = field(default=0, compare=False, repr=False)

    @classmethod
    def new(cls, call_id: str, account_id: str) -> "CallState":
        return cls(call_id, account_id)

    @property
    def ended(self) -> bool:
        return self.phase in FINAL

    @property
    def dialed(self) -> bool:
        return self.phase in DIALED

    @property
    def answered(self) -> bool:
        return self.phase in ANSWERED

    @property
    def played(self) -> bool:
        return self.phase in PLAYED

    @property
    def detecting(self) -> bool:
        """Machine detection was asked for and has not answered yet."""
        return bool(self.request.get("machine_detection")) and self.answered_by is None

    @property
    def waiting_for_detection(self) -> bool:
        """Synchronous machine detection: the prompt or flow starts on its result."""
        return self.detecting and not self.request.get("async_amd")

    def to_json(self) -> dict[str, Any]:
        """The stored form (shares the request and flow documents with this value)."""
        p = self.phase
        d: dict[str, Any] = {"call_id": self.call_id, "account_id": self.account_id, "phase": p.value,
                             "request": self.request, "audio_ref": self.audio_ref, "media_failed": self.media_failed,
                             "hangup_sent": self.hangup_sent, "ended": p in FINAL, "seen": self.seen}
        if p not in FINAL:
            # Implied by the phase; written for readers of the earlier layout (which look at
            # nothing but `ended` and `phase` once a call is over).
            d.update(answered=p in ANSWERED, dialed=p in DIALED, played=p in PLAYED, gathering=p is Phase.GATHERING)
        if self.recording:
            d["recording"] = True
        if self.stream_done:
            d["stream_done"] = True
        if self.answered_by is not None:
            d["answered_by"] = self.answered_by
        if self.flow is not None:
            d["flow"] = self.flow.to_json()
            if self.flow.seq:
                d["flow_seq"] = self.flow.seq
        if self.updates != NO_UPDATES:
            d["updates"] = self.updates.to_json()
        if self.traceparent is not None:
            d["traceparent"] = self.traceparent
        if self.tracestate is not None:
            d["tracestate"] = self.tracestate
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "CallState":
        flow = d.get("flow")
        return cls(d["call_id"], d["account_id"], Phase(d["phase"]), d.get("request") or {}, d.get("audio_ref"),
                   d.get("media_failed"), bool(d.get("hangup_sent")), bool(d.get("recording")), d.get("seen", 0),
                   FlowRun.from_json(flow, d.get("flow_seq", 0)) if flow is not None else None,
                   bool(d.get("stream_done")), d.get("answered_by"),
                   Updates.from_json(d["updates"]) if d.get("updates") else NO_UPDATES, d.get("traceparent"),
                   d.get("tracestate"))
