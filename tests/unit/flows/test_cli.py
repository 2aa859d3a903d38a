"""`canary-voice flows simulate|validate`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from services.cli.flows import ordered_inputs, register

EX = Path(__file__).resolve().parents[3] / "schemas" / "flows" / "examples"


def app() -> typer.Typer:
    a = typer.Typer()

    @a.callback()
    def _root() -> None:
        pass

    register(a)
    return a


def run(*args: str):
    return CliRunner().invoke(app(), list(args))


def test_ordered_inputs():
    assert ordered_inputs(["f.json", "--press", "1", "--say", "billing", "--press=3", "--json"]) == [
        ("press", "1"), ("say", "billing"), ("press", "3")]


def test_simulate_prints_the_path_with_inputs_in_the_given_order():
    r = run("flows", "simulate", str(EX / "main_menu.json"), "--press", "2", "--press", "9", "--press", "1")
    assert r.exit_code == 0, r.output
    assert "path: welcome > main_menu > support_menu > support_menu > support_internet > leave_message" \
           " > record_message > goodbye > end" in r.output
    r = run("flows", "simulate", str(EX / "main_menu.json"), "--say", "billing", "--json")
    out = json.loads(r.output)
    assert out["path"] == ["welcome", "main_menu", "billing", "goodbye", "end"]
    assert out["steps"][1]["input"] == "say billing"


def test_simulate_brief_example_and_unused_input():
    r = run("flows", "simulate", str(EX / "main_menu.json"), "--press", "1", "--press", "3", "--say", "billing")
    assert r.exit_code == 0
    assert "path: welcome > main_menu > sales > sales_hold > goodbye > end" in r.output
    assert "unused input: press 3, say billing" in r.output


def test_simulate_no_input_times_out_to_goodbye():
    r = run("flows", "simulate", str(EX / "main_menu.json"), "--json")
    assert json.loads(r.output)["path"] == ["welcome", "main_menu", "main_menu", "main_menu", "goodbye", "end"]


def test_invalid_flow_exits_1_naming_the_step():
    r = run("flows", "simulate", str(EX / "bad_missing_target.json"), "--press", "1")
    assert r.exit_code == 1 and "steps.menu" in r.output
    r = run("flows", "validate", str(EX / "bad_unreachable.json"))
    assert r.exit_code == 1 and "steps.orphan" in r.output
    assert run("flows", "validate", str(EX / "main_menu.json")).output.strip() == "valid"


def test_simulate_takes_transfer_outcomes(tmp_path):
    flow = tmp_path / "transfer.json"
    flow.write_text(json.dumps({"start": "t", "steps": {
        "t": {"kind": "transfer", "to": "sip:agent@pbx.example.com", "on_failed": "sorry"},
        "sorry": {"kind": "say", "text": "Sorry."}}}))
    r = run("flows", "simulate", str(flow), "--transfer", "failed", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["path"] == ["t", "sorry"]
    r = run("flows", "simulate", str(flow))
    assert r.exit_code == 0 and "path: t\n" in r.output and "ended: transferred" in r.output
    assert run("flows", "simulate", str(flow), "--transfer", "busy").exit_code == 2
