"""`canary-voice flows ...`: validate and simulate IVR flows locally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperCommand


class _KeepsArgOrder(TyperCommand):
    """Keeps the raw arguments so --press and --say can be replayed in the order given."""

    def parse_args(self, ctx, args):
        ctx.meta["flows.raw_args"] = list(args)
        return super().parse_args(ctx, args)


def ordered_inputs(raw: list[str]) -> list[tuple[str, str]]:
    """[("press", "1"), ("say", "billing"), ...] from raw arguments, in order."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(raw):
        tok = raw[i]
        for opt in ("--press", "--say", "--dial", "--transfer"):
            if tok == opt and i + 1 < len(raw):
                out.append((opt[2:], raw[i + 1]))
                i += 1
                break
            if tok.startswith(opt + "="):
                out.append((opt[2:], tok[len(opt) + 1:]))
                break
        i += 1
    return out


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        typer.secho(f"error: cannot read {path}: {exc}", fg="red", err=True)
        raise typer.Exit(2)


def _report_invalid(errors) -> None:
    for err in errors:
        typer.secho(f"{err.field}: {err.message} [{err.code}]", fg="red", err=True)


def register(app: typer.Typer) -> None:
    flows = typer.Typer(help="IVR flows: validate and simulate without a phone.", no_args_is_help=True)
    app.add_typer(flows, name="flows")

    @flows.command("validate")
    def validate(flow_file: Path = typer.Argument(..., help="flow JSON file")) -> None:
        """Check a flow as the API does on save (exit 1 with every error)."""
        from services.lib.flows.validate import validate_flow

        errors = validate_flow(_load(flow_file))
        if errors:
            _report_invalid(errors)
            raise typer.Exit(1)
        typer.echo("valid")

    @flows.command("simulate", cls=_KeepsArgOrder)
    def simulate(ctx: typer.Context,
                 flow_file: Path = typer.Argument(..., help="flow JSON file"),
                 press: list[str] = typer.Option([], "--press", help="keys pressed at the next gather (repeatable)"),
                 say: list[str] = typer.Option([], "--say", help="words spoken at the next gather (repeatable)"),
                 dial: list[str] = typer.Option([], "--dial", help="outcome of the next dial step: completed, busy,"
                                                                   " no-answer or failed (repeatable)"),
                 transfer: list[str] = typer.Option([], "--transfer", help="outcome of the next transfer step:"
                                                                           " completed or failed (repeatable)"),
                 as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
                 answered_by: Optional[str] = typer.Option(
                     None, "--answered-by", help="machine detection's result for answered_by steps (human, "
                                                 "machine_start, machine_end_beep, ...; default: none ran)"),
                 max_steps: int = typer.Option(200, help="stop after this many steps")) -> None:
        """Run FLOW_FILE with scripted input (--press/--say, used in the order given; a gather
        with no input left times out) and print the path taken."""
        from events.catalog import ANSWERED_BY
        from services.lib.flows.simulate import render, simulate as run
        from services.lib.flows.validate import validate_flow

        flow = _load(flow_file)
        errors = validate_flow(flow)
        if errors:
            _report_invalid(errors)
            raise typer.Exit(1)
        inputs = ordered_inputs(ctx.meta.get("flows.raw_args", []))
        if sorted(v for k, v in inputs if k == "press") != sorted(press) or \
                sorted(v for k, v in inputs if k == "say") != sorted(say) or \
                sorted(v for k, v in inputs if k == "dial") != sorted(dial) or \
                sorted(v for k, v in inputs if k == "transfer") != sorted(transfer):
            inputs = ([("press", p) for p in press] + [("say", s) for s in say]
                      + [("dial", d) for d in dial] + [("transfer", t) for t in transfer])  # order not recovered
        from services.lib.flows.engine import DIAL_OUTCOMES, TRANSFER_OUTCOMES

        if bad := [t for t in transfer if t not in TRANSFER_OUTCOMES]:
            typer.echo(f"--transfer {bad[0]}: one of {', '.join(TRANSFER_OUTCOMES)}", err=True)
            raise typer.Exit(2)

        if bad := [d for d in dial if d not in DIAL_OUTCOMES]:
            typer.echo(f"--dial {bad[0]}: one of {', '.join(DIAL_OUTCOMES)}", err=True)
            raise typer.Exit(2)
        if answered_by is not None and answered_by not in ANSWERED_BY:
            typer.echo(f"--answered-by: one of {', '.join(ANSWERED_BY)}", err=True)
            raise typer.Exit(2)
        sim = run(flow, inputs, max_entries=max_steps, answered_by=answered_by)
        typer.echo(json.dumps(sim.to_dict(), indent=2) if as_json else render(sim))
