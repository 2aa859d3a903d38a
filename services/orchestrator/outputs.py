"""What a decision asks the I/O edge to do, as typed values (no I/O here).

`decide` returns these in order; `service.py` carries them out: publish the events,
write the timers and the pacing slot in the same transaction as the new state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Union

from events import Envelope
from services.orchestrator.state import CallState


@dataclass(frozen=True, slots=True)
class Emit:
    """Publish this event or gateway instruction on the event log."""

    event: Envelope


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Arm (or re-arm) the call's durable timer `name`; it fires as `timer.fired` with `token`."""

    name: str
    due: datetime
    token: str = ""


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Disarm the call's timer `name` (a no-op when it is not armed)."""

    name: str


@dataclass(frozen=True, slots=True)
class NextDialSlot:
    """The account's next free dial time (per-account pacing)."""

    at: datetime


Output = Union[Emit, StartTimer, CancelTimer, NextDialSlot]
TimerOutput = Union[StartTimer, CancelTimer]


class Decision(NamedTuple):
    """`(state, outputs)`: the call's next state and what to do, in order."""

    state: CallState
    outputs: tuple[Output, ...] = ()

    @property
    def events(self) -> list[Envelope]:
        return [o.event for o in self.outputs if type(o) is Emit]

    @property
    def timers(self) -> list[TimerOutput]:
        return [o for o in self.outputs if type(o) is StartTimer or type(o) is CancelTimer]

    @property
    def pacing_next(self) -> datetime | None:
        slots = [o.at for o in self.outputs if type(o) is NextDialSlot]
        return slots[-1] if slots else None
