"""Flow schema and validation on save: good and bad fixtures, each error naming its step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from services.lib.flows.validate import FlowInvalid, check_flow, validate_flow

EXAMPLES = Path(__file__).resolve().parents[3] / "schemas" / "flows" / "examples"
SCHEMA = json.loads((EXAMPLES.parent / "flow.schema.json").read_text())

# fixture -> (field, code) of the error it must produce
BAD = {
    "bad_unknown_kind.json": ("steps.b", "unknown_step_kind"),
    "bad_missing_target.json": ("steps.menu", "missing_target"),
    "bad_unreachable.json": ("steps.orphan", "unreachable"),
    "bad_loop_without_gather.json": ("steps.again", "loop_without_gather"),
    "bad_invalid_step.json": ("steps.hello", "invalid_step"),
    "bad_missing_start.json": ("start", "missing_target"),
}


def load(name: str):
    return json.loads((EXAMPLES / name).read_text())


def test_schema_itself_is_valid():
    Draft202012Validator.check_schema(SCHEMA)


def test_every_bad_fixture_is_listed():
    assert {p.name for p in EXAMPLES.glob("bad_*.json")} == set(BAD)


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.json") if not p.name.startswith("bad_")))
def test_good_fixtures_pass_schema_and_graph_checks(name):
    doc = load(name)
    Draft202012Validator(SCHEMA).validate(doc)
    assert validate_flow(doc) == []
    assert check_flow(doc) is doc


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_fixtures_name_the_step(name):
    field, code = BAD[name]
    errors = validate_flow(load(name))
    assert (field, code) in [(e.field, e.code) for e in errors], errors
    with pytest.raises(FlowInvalid):
        check_flow(load(name))


def test_schema_rejects_the_structurally_bad_fixtures_too():
    v = Draft202012Validator(SCHEMA)
    for name in ("bad_unknown_kind.json", "bad_invalid_step.json"):
        assert not v.is_valid(load(name)), name


def test_missing_target_reports_the_exact_path():
    [err] = validate_flow(load("bad_missing_target.json"))
    assert err.path == "steps.menu.branches.2" and "nowhere" in err.message
    assert err.to_dict() == {"field": "steps.menu", "code": "missing_target", "path": "steps.menu.branches.2",
                             "message": err.message}


def test_loop_through_a_gather_is_fine_but_a_self_goto_is_not():
    ok = {"start": "m", "steps": {
        "m": {"kind": "gather", "branches": {"1": "s"}, "default": "s"},
        "s": {"kind": "say", "text": "again", "next": "m"}}}
    assert validate_flow(ok) == []
    bad = {"start": "g", "steps": {"g": {"kind": "goto", "step": "g"}}}
    assert [(e.field, e.code) for e in validate_flow(bad)] == [("steps.g", "loop_without_gather")]


def test_not_an_object_and_empty_steps_and_unknown_top_field():
    assert validate_flow([])[0].code == "invalid_flow"
    assert validate_flow({"start": "a", "steps": {}})[0].field == "steps"
    errs = validate_flow({"start": "a", "steps": {"a": {"kind": "hangup"}}, "extra": 1})
    assert [(e.field, e.code) for e in errs] == [("extra", "invalid_flow")]


def test_bad_step_name():
    errs = validate_flow({"start": "a.b", "steps": {"a.b": {"kind": "hangup"}}})
    assert ("steps.a.b", "invalid_step") in [(e.field, e.code) for e in errs]


def test_field_errors_inside_a_gather():
    flow = {"start": "m", "steps": {"m": {"kind": "gather", "num_digits": 0, "finish_on_key": "x",
                                          "prompt": {"kind": "say"}}}}
    errs = validate_flow(flow)
    assert errs and all(e.field == "steps.m" and e.code == "invalid_step" for e in errs)
    assert {e.path for e in errs} >= {"steps.m.num_digits", "steps.m.finish_on_key"}


def test_a_gather_step_s_language_must_be_one_the_transcriber_knows():
    def flow(language):
        return {"start": "ask", "steps": {
            "ask": {"kind": "gather", "type": "speech", "language": language, "prompt": {"kind": "say", "text": "¿Sí?"},
                    "branches": {}, "default": "bye"},
            "bye": {"kind": "hangup"}}}

    assert validate_flow(flow("es-MX")) == [] and validate_flow(flow("auto")) == []
    errors = validate_flow(flow("elvish"))
    assert [(e.field, e.code) for e in errors] == [("steps.ask", "invalid_step")]
    assert "BCP-47" in errors[0].message
