"""The flow language's transfer step: hand the call over; completed ends the flow, failed goes on."""

from __future__ import annotations

import pytest

from services.lib.flows import engine as fe
from services.lib.flows.simulate import simulate
from services.lib.flows.validate import validate_flow

FLOW = {"start": "hello", "steps": {
    "hello": {"kind": "say", "text": "Transferring you.", "next": "agent"},
    "agent": {"kind": "transfer", "to": "tel:+15557770010", "on_failed": "sorry", "next": "bye"},
    "sorry": {"kind": "say", "text": "Nobody could take your call."},
    "bye": {"kind": "say", "text": "Goodbye."}}}


def at_transfer(flow=FLOW):
    state, _ = fe.start(flow)
    return fe.on_input(flow, state, fe.PromptFinished())


def test_a_transfer_step_asks_for_the_transfer_and_waits():
    state, actions = at_transfer()
    assert actions == (fe.EnterStep("agent", "transfer"), fe.Transfer("agent", "tel:+15557770010"))
    assert state.waiting == "transfer"
    assert fe.on_input(FLOW, state, fe.PromptFinished()) == (state, ())
    assert fe.on_input(FLOW, state, fe.DialEnded("completed")) == (state, ())
    assert fe.on_input(FLOW, state, fe.TransferEnded("failed", step="other")) == (state, ())
    assert fe.FlowState.from_dict(state.to_dict()) == state


def test_completed_ends_the_flow_without_a_hangup():
    state, _ = at_transfer()
    state, actions = fe.on_input(FLOW, state, fe.TransferEnded("completed", step="agent"))
    assert state.done and actions == ()


def test_failed_goes_to_on_failed_else_next_else_hangs_up():
    state, _ = at_transfer()
    _, actions = fe.on_input(FLOW, state, fe.TransferEnded("failed", step="agent"))
    assert [a.name for a in actions if isinstance(a, fe.EnterStep)] == ["sorry"]
    flow = {"start": "t", "steps": {"t": {"kind": "transfer", "to": "+15557770010", "next": "bye"},
                                    "bye": {"kind": "hangup"}}}
    state, _ = fe.start(flow)
    _, actions = fe.on_input(flow, state, fe.TransferEnded("failed", step="t"))
    assert [a.name for a in actions if isinstance(a, fe.EnterStep)] == ["bye"]
    flow = {"start": "t", "steps": {"t": {"kind": "transfer", "to": "sip:agent@pbx.example.com"}}}
    state, _ = fe.start(flow)
    state, actions = fe.on_input(flow, state, fe.TransferEnded("failed", step="t"))
    assert state.done and actions == (fe.Hangup("transfer failed"),)


@pytest.mark.parametrize("to", ["+15557770010", "tel:+15557770010", "tel:+1-555-777-0010;ext=22",
                                "sip:agent@pbx.example.com", "sips:agent@pbx.example.com;transport=tls"])
def test_valid_targets(to):
    assert validate_flow({"start": "t", "steps": {"t": {"kind": "transfer", "to": to}}}) == []


@pytest.mark.parametrize("step, path", [
    ({"kind": "transfer"}, "steps.t"),
    ({"kind": "transfer", "to": "5557770010"}, "steps.t.to"),
    ({"kind": "transfer", "to": "http://x"}, "steps.t.to"),
    ({"kind": "transfer", "to": "sip:a b@c"}, "steps.t.to"),
    ({"kind": "transfer", "to": "+1555"}, "steps.t.to"),  # not a possible number
    ({"kind": "transfer", "to": "+15557770010", "branches": {"failed": "t"}}, "steps.t"),
])
def test_invalid_steps_name_their_field(step, path):
    errors = validate_flow({"start": "t", "steps": {"t": step}})
    assert errors and errors[0].path == path and errors[0].code == "invalid_step", errors


def test_on_failed_must_name_a_step():
    errors = validate_flow({"start": "t", "steps": {"t": {"kind": "transfer", "to": "+15557770010",
                                                          "on_failed": "nowhere"}}})
    assert [e.code for e in errors] == ["missing_target"] and errors[0].path == "steps.t.on_failed"


def test_simulate():
    sim = simulate(FLOW, [])
    assert sim.path == ["hello", "agent"] and sim.ended == "transferred"
    sim = simulate(FLOW, [("transfer", "failed")])
    assert sim.path == ["hello", "agent", "sorry"] and sim.ended == "flow ended"
    assert sim.entries[1].says == ["transfer to tel:+15557770010 (not placed in a simulation)"]
