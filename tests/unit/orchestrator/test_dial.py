"""A flow's dial step in the orchestrator: the parent's events, the second call (its own id and
state), and the outcome back on the parent's timeline. Pure: decide() only, no broker."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from events import Envelope
from services.orchestrator.decide import decide
from services.orchestrator.flow import leg_id
from services.orchestrator.outputs import CancelTimer, StartTimer
from services.orchestrator.state import CallState, Phase
from tests.unit.orchestrator.helpers import NO_MEDIA, NOW, Call, msg, timers, types

FLOW = {"start": "agent", "steps": {
    "agent": {"kind": "dial", "to": "+15557770010", "timeout": 20, "record": True,
              "branches": {"busy": "busy"}, "next": "bye"},
    "busy": {"kind": "say", "text": "The line is busy."},
    "bye": {"kind": "hangup"}}}


def parent_dialing() -> tuple[Call, Envelope]:
    """A parent call answered, its flow at the dial step; returns the leg's creation event."""
    c = Call()
    c(msg("PlaceCall", **NO_MEDIA, flow=FLOW))
    c(msg("call.ringing"))
    d = c(msg("call.answered"))
    assert types(d) == ["flow.step.entered", "dial.started", "call.leg.requested"]
    return c, d.events[-1]


def test_the_dial_step_starts_a_second_call_with_its_own_id():
    c, leg = parent_dialing()
    started = c.last("dial.started")
    child = leg_id("call_1", "agent#1")
    assert started.call_id == "call_1" and leg.call_id == child != "call_1"
    assert started.data == {"child_call_id": child, "to": "+15557770010", "from": "+15559876543", "timeout": 20,
                            "record": True, "step": "agent", "tag": "agent#1"}
    assert leg.data == {"parent_call_id": "call_1", "to": "+15557770010", "from": "+15559876543", "timeout": 20,
                        "carrier": "sandbox", "step": "agent", "tag": "agent#1",
                        "record": {"channels": "dual", "transcribe": False}}
    assert c.state.flow.engine_state.waiting == "dial"
    # Deterministic: re-deciding the same input (after a crash) emits the same ids for the same call.
    answered = Envelope(type="call.answered", call_id="call_1", account_id="acct_1", id=started.causation_id,
                        occurred_at="2026-01-01T00:00:00.000Z")
    again = decide(c.decisions[-2].state, answered, NOW)
    assert [(e.id, e.call_id) for e in again.events[1:]] == [(started.id, "call_1"), (leg.id, child)]


def leg_msg(leg: Envelope, type: str, **data) -> Envelope:
    return Envelope(type=type, call_id=leg.call_id, account_id="acct_1", data=data, id=str(uuid.uuid4()),
                    occurred_at="2026-01-01T00:00:05.000Z")


def test_the_second_call_is_placed_at_once_and_linked_to_its_parent():
    _, leg = parent_dialing()
    child = Call()
    d = child(leg)
    assert types(d) == ["call.queued", "dial.requested"]
    queued, dial = d.events
    assert all(e.call_id == leg.call_id for e in d.events)
    assert queued.data["direction"] == "outbound-dial" and queued.data["parent_call_id"] == "call_1"
    assert dial.data == {"to": "+15557770010", "from": "+15559876543", "timeout": 20, "carrier": "sandbox",
                         "direction": "outbound-dial", "parent_call_id": "call_1",
                         "parent_record": {"channels": "dual", "transcribe": False}}
    assert child.state.phase is Phase.DIALING and [n for n, _ in timers(d)] == ["ring_timeout"]
    assert child(leg).events == []  # a redelivered creation event


def test_answered_the_parent_learns_it_and_the_leg_plays_no_script():
    parent, leg = parent_dialing()
    child = Call()
    child(leg)
    child(leg_msg(leg, "call.ringing"))
    d = child(leg_msg(leg, "call.answered"))
    assert [e.type for e in d.events] == ["dial.answered"] and d.events[0].call_id == "call_1"
    assert d.events[0].data == {"child_call_id": leg.call_id, "step": "agent", "tag": "agent#1"}
    assert isinstance(d.outputs[0], CancelTimer) and isinstance(d.outputs[1], StartTimer)
    # The parent (a step with record) records the conversation from here, both channels.
    p = parent(replace(d.events[0], id=str(uuid.uuid4())))
    assert types(p) == ["record.requested"] and p.events[0].data["channels"] == "dual"
    assert parent.state.recording
    # Nothing the leg hears afterwards starts a script on it.
    assert child(leg_msg(leg, "prompt.finished")).events == []


@pytest.mark.parametrize("end,outcome,next_step", [
    ("call.completed", "completed", "bye"), ("call.busy", "busy", "busy"), ("call.no-answer", "no-answer", "bye"),
    ("call.failed", "failed", "bye"), ("call.canceled", "no-answer", "bye")])
def test_the_leg_s_end_is_the_parent_s_outcome(end, outcome, next_step):
    parent, leg = parent_dialing()
    child = Call()
    child(leg)
    if outcome == "completed":
        child(leg_msg(leg, "call.answered"))
    d = child(leg_msg(leg, end, reason="whatever the carrier said"))
    assert child.state.phase is Phase.ENDED
    ended = d.events[-1]
    assert ended.type == "dial.ended" and ended.call_id == "call_1"
    assert ended.data["outcome"] == outcome and ended.data["reason"] == "whatever the carrier said"
    assert ended.data["duration"] == (0 if outcome == "completed" else None)
    p = parent(ended)
    entered = [e.data["step"] for e in p.events if e.type == "flow.step.entered"]
    assert entered == [next_step]
    assert parent(ended).events == []  # the same outcome again: the flow moved on already


def test_a_leg_ended_by_the_orchestrator_still_tells_its_parent():
    _, leg = parent_dialing()
    child = Call()
    child(leg)
    fired = leg_msg(leg, "timer.fired", timer="hangup_grace")
    d = child(fired)
    assert types(d) == ["call.failed", "dial.ended"] and d.events[1].data["outcome"] == "failed"


def test_a_leg_whose_caller_id_is_refused_is_not_dialled():
    _, leg = parent_dialing()
    errors = [{"code": "number_not_verified", "field": "from", "message": "+15559876543 is not verified"}]
    d = decide(None, leg, NOW, validation_errors=errors)
    assert types(d) == ["call.queued", "call.rejected", "dial.ended"]
    assert d.state.phase is Phase.REJECTED and "dial.requested" not in types(d)
    assert d.events[-1].data["outcome"] == "failed" and "not verified" in d.events[-1].data["reason"]


def test_a_stale_outcome_is_ignored_and_an_inbound_call_shows_its_own_number():
    parent, leg = parent_dialing()
    stale = Envelope(type="dial.ended", call_id="call_1", account_id="acct_1",
                     data={"child_call_id": "call_x", "outcome": "busy", "step": "agent", "tag": "agent#0"})
    assert parent(stale).events == []
    s = CallState.from_json(parent.state.to_json())
    assert s == parent.state  # the state round-trips while it dials
    inbound = Call()
    inbound(msg("call.received", to="+15559876543", **{"from": "+15550001111"}, carrier="sandbox"),
            flow_def={"version": 1, "flow": FLOW})
    d = inbound(msg("call.answered"))
    assert d.events[-1].data["from"] == "+15559876543"  # the account's number, not the caller's


def test_the_dial_call_option_runs_as_a_dial_step_after_the_greeting():
    """PlaceCall `dial` (click-to-call): no script prompt is rendered up front; on answer the
    greeting is the flow's say step, then the second call is placed as a dial step's."""
    c = Call()
    d = c(msg("PlaceCall", **{**NO_MEDIA, "tts": {"text": "Connecting you."}},
              dial={"to": "+15557770010", "timeout": 20}))
    assert "tts.requested" not in types(d)
    c(msg("call.ringing"))
    d = c(msg("call.answered"))
    assert types(d) == ["flow.step.entered", "tts.requested"]
    assert d.events[1].data["text"] == "Connecting you."
    assert c.state.flow.definition["start"] == "greeting"
    assert types(c(msg("tts.rendered", audio_ref="sha256:g.wav", step="greeting#1"))) == ["play.requested"]
    d = c(msg("prompt.finished", step="greeting#1"))
    assert types(d) == ["flow.step.entered", "dial.started", "call.leg.requested"]
    assert d.events[1].data["to"] == "+15557770010" and d.events[1].data["timeout"] == 20


def test_the_second_call_is_named_on_its_parent_s_partition():
    """With the events topic's partition count known, the leg's id lands on the parent's partition
    (its instructions reach the gateway holding the parent); derived all the same."""
    from services.common.kafka import partition_of

    for n in (2, 3, 6, 12):
        for k in range(40):
            parent = f"call_{k:020d}"
            child = leg_id(parent, "agent#1", n)
            assert partition_of(child.encode(), n) == partition_of(parent.encode(), n)
            assert leg_id(parent, "agent#1", n) == child and leg_id(parent, "agent#2", n) != child
    assert leg_id("call_1", "agent#1", 1) == leg_id("call_1", "agent#1")  # one partition: the plain derivation
    c = Call()
    c(msg("PlaceCall", **NO_MEDIA, flow=FLOW), partitions=6)
    c(msg("call.ringing"), partitions=6)
    d = c(msg("call.answered"), partitions=6)
    leg = d.events[-1]
    assert leg.call_id == leg_id("call_1", "agent#1", 6)
    assert partition_of(leg.call_id.encode(), 6) == partition_of(b"call_1", 6)
    assert d.events[1].data["child_call_id"] == leg.call_id
