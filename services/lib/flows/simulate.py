"""Run a flow with scripted caller input, no phone: what `canary-voice flows simulate` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from services.lib.flows import engine as e


@dataclass
class Entry:
    step: str
    kind: str
    says: list[str] = field(default_factory=list)  # what the caller hears
    input: str | None = None  # what the caller did at a gather


@dataclass
class Simulation:
    entries: list[Entry]
    ended: str  # hangup reason
    unused: list[tuple[str, str]]

    @property
    def path(self) -> list[str]:
        return [x.step for x in self.entries]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ended": self.ended, "unused_inputs": [f"{k} {v}" for k, v in self.unused],
                "steps": [{"step": x.step, "kind": x.kind, "hears": x.says, "input": x.input} for x in self.entries]}


def _hear(a: e.Action) -> str | None:
    if isinstance(a, e.Say):
        return f'say "{a.text}"'
    if isinstance(a, e.Play):
        return f"play {a.url}"
    if isinstance(a, e.Pause):
        return f"pause {a.seconds:g}s"
    if isinstance(a, e.Record):
        return f"record ({a.channels}, up to {a.max_length}s)"
    if isinstance(a, e.CallWebhook):
        return f"webhook {a.url} (not called in a simulation)"
    if isinstance(a, e.Stream):
        return f"stream {a.url} ({a.track}{', bidirectional' if a.bidirectional else ''}; not opened in a simulation)"
    if isinstance(a, e.Dial):
        return f"dial {a.to} (ringback until answered; not placed in a simulation)"
    if isinstance(a, e.Transfer):
        return f"transfer to {a.to} (not placed in a simulation)"
    if isinstance(a, e.Hangup):
        return f"hang up ({a.reason})"
    return None


def simulate(flow: Mapping[str, Any], inputs: list[tuple[str, str]], *, max_entries: int = 200,
             answered_by: str | None = None) -> Simulation:
    """`inputs`: ("press", "1") or ("say", "billing"), consumed one per gather; none left = timeout.
    ("dial", outcome) is the outcome of the next dial step (completed, busy, no-answer, failed);
    a dial step with no such input next completes. ("transfer", outcome) likewise for the next
    transfer step (completed, failed); without one it completes (the call ends there).
    `answered_by`: machine detection's result, known from answer (None: no detection ran)."""
    queue = list(inputs)
    entries: list[Entry] = []
    ended = "flow ended"
    state, actions = e.start(flow, answered_by=answered_by)
    while True:
        for a in actions:
            if isinstance(a, e.EnterStep):
                entries.append(Entry(a.name, a.kind))
            elif isinstance(a, e.Gather):
                entries[-1].says += [h for h in map(_hear, a.prompt) if h]
            elif (h := _hear(a)) is not None:
                entries[-1].says.append(h)
            if isinstance(a, e.Hangup):
                ended = a.reason
        if state.done:
            break
        if state.entered >= max_entries:
            ended = f"stopped after {max_entries} steps (loop?)"
            break
        if state.waiting == "gather":
            step = flow["steps"].get(state.step) or state.dynamic.get(state.step) or {}
            if queue and queue[0][0] not in ("dial", "transfer"):  # an outcome waits for its step
                kind, value = queue.pop(0)
                entries[-1].input = f"{kind} {value}"
                if kind == "press":
                    fok = step.get("finish_on_key", "#")
                    digits, finished = (value[:-1], fok) if fok and value.endswith(fok) else (value, None)
                    ev: e.Input = e.GatherCompleted(digits=digits, finished_on_key=finished)
                else:
                    ev = e.GatherCompleted(speech=value, confidence=1.0)
            else:
                entries[-1].input = "(no input: timeout)"
                ev = e.GatherTimeout()
        elif state.waiting == "webhook":
            ev = e.WebhookFailed("not called in a simulation")
        elif state.waiting == "dial":
            outcome = queue.pop(0)[1] if queue and queue[0][0] == "dial" else "completed"
            entries[-1].input = f"dial {outcome}"
            ev = e.DialEnded(outcome)
        elif state.waiting == "transfer":
            outcome = queue.pop(0)[1] if queue and queue[0][0] == "transfer" else "completed"
            entries[-1].input = f"transfer {outcome}"
            if outcome == "completed":
                ended = "transferred"
            ev = e.TransferEnded(outcome)
        elif state.waiting == "stream":
            ev = e.StreamEnded("not opened in a simulation")  # as if the bot hung up at once
        else:
            ev = e.PromptFinished()
        state, actions = e.on_input(flow, state, ev)
    return Simulation(entries, ended, queue)


def render(sim: Simulation) -> str:
    width = max((len(x.step) for x in sim.entries), default=4) + 2
    lines = []
    for i, x in enumerate(sim.entries, 1):
        head = f"{i:>3}. {x.step:<{width}}{x.kind:<8}"
        body = "; ".join(x.says) if x.says else ""
        lines.append((head + body).rstrip())
        if x.input:
            lines.append(" " * (5 + width + 8) + f"<- {x.input}")
    lines.append("")
    lines.append("path: " + " > ".join(sim.path))
    lines.append(f"ended: {sim.ended}")
    if sim.unused:
        lines.append("unused input: " + ", ".join(f"{k} {v}" for k, v in sim.unused))
    return "\n".join(lines)
