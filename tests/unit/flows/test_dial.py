"""The flow language's dial step: call a second party, connect, branch on the outcome."""

from __future__ import annotations

import pytest

from services.lib.flows import engine as fe
from services.lib.flows.simulate import simulate
from services.lib.flows.validate import validate_flow

FLOW = {"start": "hello", "steps": {
    "hello": {"kind": "say", "text": "Connecting you.", "next": "agent"},
    "agent": {"kind": "dial", "to": "+15557770010", "caller_id": "+15559876543", "timeout": 20, "record": True,
              "branches": {"busy": "busy", "no-answer": "later", "failed": "later"}, "next": "bye"},
    "busy": {"kind": "say", "text": "The line is busy."},
    "later": {"kind": "say", "text": "Nobody is there."},
    "bye": {"kind": "say", "text": "Thank you for calling."}}}


def entered(actions) -> list[str]:
    return [a.name for a in actions if isinstance(a, fe.EnterStep)]


def at_dial():
    state, _ = fe.start(FLOW)
    state, actions = fe.on_input(FLOW, state, fe.PromptFinished())
    return state, actions


def test_a_dial_step_asks_for_the_second_call_and_waits():
    state, actions = at_dial()
    assert entered(actions) == ["agent"] and state.waiting == "dial"
    dial = next(a for a in actions if isinstance(a, fe.Dial))
    assert dial == fe.Dial("agent", "+15557770010", "+15559876543", 20, True)
    # Anything but the dial's end is ignored while it runs.
    assert fe.on_input(FLOW, state, fe.PromptFinished()) == (state, ())
    assert fe.on_input(FLOW, state, fe.GatherTimeout()) == (state, ())


@pytest.mark.parametrize("outcome,step", [("completed", "bye"), ("busy", "busy"), ("no-answer", "later"),
                                          ("failed", "later")])
def test_the_outcome_picks_the_branch_else_next(outcome, step):
    state, _ = at_dial()
    state, actions = fe.on_input(FLOW, state, fe.DialEnded(outcome, step="agent"))
    assert entered(actions) == [step]


def test_a_stale_outcome_changes_nothing_and_no_next_hangs_up():
    state, _ = at_dial()
    assert fe.on_input(FLOW, state, fe.DialEnded("busy", step="other")) == (state, ())
    flow = {"start": "d", "steps": {"d": {"kind": "dial", "to": "sip:alice@example.com"}}}
    state, actions = fe.start(flow)
    assert next(a for a in actions if isinstance(a, fe.Dial)) == fe.Dial("d", "sip:alice@example.com", None, 30, False)
    state, actions = fe.on_input(flow, state, fe.DialEnded("completed", step="d"))
    assert state.done and actions == (fe.Hangup("flow ended"),)


def test_the_state_round_trips_while_dialing():
    state, _ = at_dial()
    assert fe.FlowState.from_dict(state.to_dict()) == state


def errors(step: dict) -> list:
    return validate_flow({"start": "d", "steps": {"d": {"kind": "dial", "next": "x", **step},
                                                         "x": {"kind": "hangup"}}})


def test_a_valid_dial_step():
    assert validate_flow(FLOW) == []
    assert errors({"to": "sip:alice@pbx.example.com;transport=udp"}) == []


@pytest.mark.parametrize("step,path", [
    ({"to": "5551234"}, "steps.d.to"),  # neither E.164 nor a SIP URI
    ({"to": "+1"}, "steps.d.to"),  # too short
    ({"to": "+15551"}, "steps.d.to"),  # the shape of E.164 but not a possible number
    ({"to": "tel:+15551234567"}, "steps.d.to"),
    ({"to": "+15551234567", "timeout": 0}, "steps.d.timeout"),
    ({"to": "+15551234567", "timeout": 601}, "steps.d.timeout"),
    ({"to": "+15551234567", "timeout": "30"}, "steps.d.timeout"),
    ({"to": "+15551234567", "caller_id": "sip:me@example.com"}, "steps.d.caller_id"),
    ({"to": "+15551234567", "branches": {"answered": "x"}}, "steps.d.branches"),
    ({}, "steps.d"),  # no `to`
])
def test_bad_dial_steps_name_the_field(step, path):
    errs = errors(step)
    assert errs and all(e.code == "invalid_step" and e.field == "steps.d" for e in errs), errs
    assert path in [e.to_dict()["path"] for e in errs], [e.to_dict() for e in errs]


def test_a_branch_to_a_missing_step():
    errs = errors({"to": "+15551234567", "branches": {"busy": "nowhere", "failed": "x"}})
    assert [(e.code, e.path) for e in errs] == [("missing_target", "steps.d.branches.busy")]


def test_simulation_takes_dial_outcomes_in_order():
    sim = simulate(FLOW, [("dial", "busy")])
    assert sim.path == ["hello", "agent", "busy"] and sim.entries[1].input == "dial busy"
    assert sim.entries[1].says == ["dial +15557770010 (ringback until answered; not placed in a simulation)"]
    assert simulate(FLOW, []).path == ["hello", "agent", "bye"]  # no outcome given: completed
    menu = {"start": "m", "steps": {
        "m": {"kind": "gather", "branches": {"1": "d"}, "max_retries": 0, "on_timeout": "d"},
        "d": {"kind": "dial", "to": "+15551234567", "branches": {"no-answer": "x"}},
        "x": {"kind": "hangup"}}}
    # A dial outcome is never taken for a gather's input: the gather times out, the dial gets it.
    assert simulate(menu, [("dial", "no-answer")]).path == ["m", "d", "x"]
