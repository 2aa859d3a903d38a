"""The flow language's answered_by step: branch on who answered (machine detection)."""

from __future__ import annotations

import json

import pytest

from services.lib.flows import engine as fe
from services.lib.flows.validate import validate_flow

FLOW = {"start": "who", "steps": {
    "who": {"kind": "answered_by", "branches": {"human": "menu", "machine": "vm", "fax": "bye"}, "default": "menu"},
    "menu": {"kind": "say", "text": "Hello."},
    "vm": {"kind": "say", "text": "Please call us back."},
    "bye": {"kind": "hangup"}}}


def entered(actions) -> list[str]:
    return [a.name for a in actions if isinstance(a, fe.EnterStep)]


@pytest.mark.parametrize("answered_by,step", [
    ("human", "menu"), ("machine_start", "vm"), ("machine_end_beep", "vm"), ("machine_end_silence", "vm"),
    ("fax", "bye"), ("unknown", "menu"), (None, "menu")])
def test_a_known_result_branches_at_once(answered_by, step):
    state, actions = fe.start(FLOW, answered_by=answered_by)
    assert entered(actions) == ["who", step]


def test_an_exact_machine_value_beats_the_machine_branch():
    flow = {**FLOW, "steps": {**FLOW["steps"], "who": {
        "kind": "answered_by", "branches": {"machine": "vm", "machine_end_beep": "menu"}, "default": "bye"}}}
    assert entered(fe.start(flow, answered_by="machine_end_beep")[1]) == ["who", "menu"]
    assert entered(fe.start(flow, answered_by="machine_start")[1]) == ["who", "vm"]


def test_while_detecting_it_waits_and_the_result_moves_it_on():
    state, actions = fe.start(FLOW, detecting=True)
    assert entered(actions) == ["who"] and state.waiting == "detection"
    assert fe.on_input(FLOW, state, fe.PromptFinished(step="who")) == (state, ())  # not its input
    state, actions = fe.on_input(FLOW, state, fe.MachineDetected("machine_end_beep"))
    assert entered(actions) == ["vm"] and state.answered_by == "machine_end_beep"
    # A second result is ignored: the first one stands.
    again, actions = fe.on_input(FLOW, state, fe.MachineDetected("human"))
    assert actions == () and again.answered_by == "machine_end_beep"


def test_a_result_that_comes_early_is_kept_for_a_later_answered_by_step():
    flow = {"start": "hi", "steps": {"hi": {"kind": "say", "text": "Hi.", "next": "who"},
                                     "who": {"kind": "answered_by", "branches": {"human": "bye"}, "default": "bye"},
                                     "bye": {"kind": "hangup"}}}
    state, _ = fe.start(flow, detecting=True)
    state, actions = fe.on_input(flow, state, fe.MachineDetected("human"))
    assert actions == () and state.answered_by == "human" and not state.detecting
    state, actions = fe.on_input(flow, state, fe.PromptFinished(step="hi"))
    assert entered(actions) == ["who", "bye"]


def test_the_state_round_trips():
    state, _ = fe.start(FLOW, detecting=True)
    assert fe.FlowState.from_dict(state.to_dict()) == state
    assert "answered_by" not in fe.start(FLOW)[0].to_dict()  # unset: the layout of before


def test_the_step_is_valid_as_documented():
    assert validate_flow(FLOW) == []


@pytest.mark.parametrize("step,why", [
    # the branches name answered_by values (or machine), nothing else
    ({"kind": "answered_by", "branches": {"voicemail": "menu"}, "default": "menu"}, "branches"),
    # default is required: a call without detection, or an outcome not listed, goes there
    ({"kind": "answered_by", "branches": {"human": "menu"}}, "default"),
    # at least one branch
    ({"kind": "answered_by", "branches": {}, "default": "menu"}, "branches"),
    # no other fields
    ({"kind": "answered_by", "branches": {"human": "menu"}, "default": "menu", "timeout": 5}, "timeout"),
])
def test_bad_steps_are_refused_naming_the_step(step, why):
    flow = {**FLOW, "steps": {**FLOW["steps"], "who": step}}
    errors = validate_flow(flow)
    assert errors and errors[0].field == "steps.who" and errors[0].code == "invalid_step", errors
    assert why in errors[0].message or why in (errors[0].path or ""), errors[0]


def test_a_missing_target_is_refused():
    flow = {**FLOW, "steps": {**FLOW["steps"], "who": {"kind": "answered_by", "branches": {"human": "nowhere"},
                                                       "default": "menu"}}}
    errors = validate_flow(flow)
    assert ("steps.who", "missing_target") in [(e.field, e.code) for e in errors]
    assert errors[0].path == "steps.who.branches.human"  # (vm and bye, no longer reached, are reported too)


def test_the_simulator_takes_a_detection_result(tmp_path):
    from tests.unit.flows.test_cli import run

    path = tmp_path / "flow.json"
    path.write_text(json.dumps(FLOW))
    r = run("flows", "simulate", str(path), "--answered-by", "machine_end_beep", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["path"][:2] == ["who", "vm"]
    r = run("flows", "simulate", str(path), "--json")  # no detection: the default
    assert json.loads(r.output)["path"][:2] == ["who", "menu"]
    r = run("flows", "simulate", str(path), "--answered-by", "voicemail")  # not a value: exit 2, saying why
    assert r.exit_code == 2 and "one of human" in r.output
