"""`canary-voice`: the operator's and developer's command line."""

from __future__ import annotations

import asyncio
import sys

import typer

app = typer.Typer(help="Canary Voice: programmable voice on Kafka + Postgres.", no_args_is_help=True)
stack_app = typer.Typer(help="The local stack: Kafka (KRaft) + PostgreSQL, no Docker.", no_args_is_help=True)
schemas_app = typer.Typer(help="JSON Schema / OpenAPI / AsyncAPI documents.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(schemas_app, name="schemas")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg="red", err=True)
    raise typer.Exit(1)


@stack_app.command("up")
def stack_up() -> None:
    """Start Kafka and Postgres (idempotent), apply migrations, create topics."""
    from services.ops import stack

    try:
        stack.up()
    except Exception as exc:
        _fail(exc)


@stack_app.command("down")
def stack_down() -> None:
    """Stop Kafka and Postgres."""
    from services.ops import stack

    stack.down()


@stack_app.command("status")
def stack_status() -> None:
    """Health of Kafka and Postgres by real requests; exit 1 if any is down."""
    from services.ops import stack

    st = stack.status()
    for name, ok in st.items():
        typer.echo(f"{name:9} {'up' if ok else 'down'}")
    raise typer.Exit(0 if all(st.values()) else 1)


@schemas_app.command("export")
def schemas_export() -> None:
    """Write every generated document: schemas/*.json, openapi.json and asyncapi.yaml."""
    from services.api import asyncapi, openapi
    from services.ops import schemas

    for path in schemas.export():
        typer.echo(path)
    typer.echo(openapi.write())
    typer.echo(asyncapi.write())


@app.command("projector")
def projector() -> None:
    """Run the projector in the foreground."""
    from services.projector.service import main

    asyncio.run(main())


@app.command("run")
def run() -> None:
    """Bring the stack up and run every service in one supervised process group."""
    from services.ops import stack
    from services.ops.run import services_and_banner
    from services.ops.supervisor import supervise

    import os

    # Development mode: a developer receives webhooks (and serves audio_url files) on
    # their own machine, so loopback targets are allowed; production never sets this.
    os.environ.setdefault("CANARY_ALLOW_PRIVATE_URLS", "1")
    os.environ.setdefault("CANARY_LOG_FORMAT", "console")  # humans read these logs
    try:
        stack.up()
    except Exception as exc:
        _fail(exc)
    svcs, banner = services_and_banner()
    asyncio.run(supervise(svcs, banner))


# Each service contributes its own commands: a module with `register(app)`. Listed here
# so `canary-voice --help` shows everything; a module not yet present is skipped.
_PLUGINS = (
    "services.api.cli",
    "services.orchestrator.cli",
    "services.telephony.cli",
    "services.webhooks.cli",
    "services.flows.cli",
    "services.tts.cli",
    "services.ops.replay",
)


def _load_plugins() -> None:
    from services.common.plugins import import_optional

    for name in _PLUGINS:
        mod = import_optional(name)
        if mod is not None:
            mod.register(app)


def main() -> None:
    _load_plugins()
    app()


if __name__ == "__main__":
    sys.exit(main())
