"""Feeding inputs to the pure orchestrator functions, without a broker."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timezone

from events import Envelope
from services.orchestrator.decide import decide
from services.orchestrator.outputs import CancelTimer, Decision, StartTimer
from services.orchestrator.state import CallState

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
REQ = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Hi", "voice": "en-US-Neural2-F"},
       "timeout": 30, "carrier": "sandbox"}
NO_MEDIA = {k: v for k, v in REQ.items() if k != "tts"}
MENU = {
    "start": "welcome",
    "steps": {
        "welcome": {"kind": "say", "text": "Welcome.", "next": "menu"},
        "menu": {"kind": "gather", "num_digits": 1, "timeout": 5, "max_retries": 1,
                 "prompt": {"kind": "say", "text": "Press 1 for sales, 9 to repeat."},
                 "branches": {"1": "sales", "9": "menu"}, "default": "menu", "on_timeout": "bye"},
        "sales": {"kind": "say", "text": "Sales.", "next": "bye"},
        "bye": {"kind": "hangup"},
    },
}
_ids = itertools.count(1)


def msg(type: str, **data) -> Envelope:
    """An input with a fresh, predictable id."""
    return Envelope(type=type, call_id="call_1", account_id="acct_1", data=data,
                    id=str(uuid.UUID(int=next(_ids))), occurred_at="2026-01-01T00:00:00.000Z")


def types(d: Decision) -> list[str]:
    return [e.type for e in d.events]


def timers(d: Decision) -> list[tuple[str, object]]:
    """(name, due) for armed timers, (name, None) for disarmed ones."""
    return [(t.name, t.due if isinstance(t, StartTimer) else None) for t in d.timers]


class Call:
    """One call driven input by input; keeps the latest state and every decision."""

    def __init__(self, state: CallState | None = None):
        self.state = state
        self.decisions: list[Decision] = []

    def __call__(self, m: Envelope, now: datetime = NOW, **kw) -> Decision:
        d = decide(self.state, m, now, **kw)
        self.state = d.state
        self.decisions.append(d)
        return d

    def armed(self) -> dict[str, StartTimer]:
        out: dict[str, StartTimer] = {}
        for d in self.decisions:
            for t in d.timers:
                if isinstance(t, CancelTimer):
                    out.pop(t.name, None)
                else:
                    out[t.name] = t
        return out

    def last(self, type: str) -> Envelope:
        return [e for d in self.decisions for e in d.events if e.type == type][-1]
