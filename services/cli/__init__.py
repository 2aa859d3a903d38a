"""`canary-voice`: the operator's and developer's command line.

The top layer: it may import every service, `services.ops` and the libraries; each
service keeps its own commands in its `cli` module (`register(typer)`), listed in
`_register_commands`. `flows` (the IVR library's validate/simulate) lives here.
"""

from __future__ import annotations

import asyncio

import typer

app = typer.Typer(help="Canary Voice: programmable voice on Kafka + Postgres.", no_args_is_help=True)
stack_app = typer.Typer(help="The local stack: Kafka (KRaft) + PostgreSQL, no Docker.", no_args_is_help=True)
schemas_app = typer.Typer(help="JSON Schema / OpenAPI / AsyncAPI documents.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(schemas_app, name="schemas")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg="red", err=True)
    raise typer.Exit(1)


_BROKERS_HELP = ("1: the single broker on 127.0.0.1:9092; 3: the local KRaft cluster on 127.0.0.1:9192-9194"
                 " (replication 3, min.insync.replicas 2), beside the single broker")


def _check_brokers(brokers: int) -> None:
    if brokers not in (1, 3):
        _fail(ValueError(f"--brokers {brokers}: use 1 (the single broker) or 3 (the local cluster)"))


@stack_app.command("up")
def stack_up(brokers: int = typer.Option(1, "--brokers", help=_BROKERS_HELP)) -> None:
    """Start Kafka and Postgres (idempotent), apply migrations, create topics."""
    from services.ops import stack

    _check_brokers(brokers)
    try:
        stack.up(brokers)
    except Exception as exc:
        _fail(exc)
    if brokers > 1:
        typer.echo(f"services use it with CANARY_KAFKA_BOOTSTRAP={stack.cluster_bootstrap(brokers)}"
                   f" CANARY_KAFKA_REPLICATION={brokers}")


@stack_app.command("down")
def stack_down(brokers: int = typer.Option(1, "--brokers", help="3: stop only the local cluster")) -> None:
    """Stop Kafka and Postgres (with --brokers 3: only the local cluster, nothing else)."""
    from services.ops import stack

    _check_brokers(brokers)
    if brokers > 1:
        stack.cluster_down()
        return
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
    from services.api import openapi
    from services.ops import asyncapi, schemas

    for path in schemas.export():
        typer.echo(path)
    typer.echo(openapi.write())
    typer.echo(asyncapi.write())


@schemas_app.command("openapi")
def schemas_openapi() -> None:
    """Write schemas/openapi.json from the API app."""
    from services.api.openapi import write

    typer.echo(write())


@schemas_app.command("asyncapi")
def schemas_asyncapi() -> None:
    """Write schemas/asyncapi.yaml (AsyncAPI 3) for the four topics."""
    from services.ops.asyncapi import write

    typer.echo(write())


@app.command("migrate")
def migrate(topics: bool = typer.Option(True, "--topics/--no-topics",
                                        help="also create the service topics if missing")) -> None:
    """Apply the Postgres migrations, create the live projection tables and (unless
    --no-topics) the Kafka topics, against CANARY_DATABASE_URL / CANARY_KAFKA_BOOTSTRAP.
    Idempotent: what `stack up` does after starting the local stack, for a deployment whose
    Kafka and Postgres run elsewhere (run it before rolling out a release)."""
    from services.common import db
    from services.common.kafka import ensure_topics
    from services.ops.stack import ensure_projections

    try:
        applied = asyncio.run(db.migrate())
        typer.echo(f"migrations: {len(applied)} applied" if applied else "migrations: up to date")
        typer.echo(f"projections: {asyncio.run(ensure_projections())}")
        if topics:
            created = asyncio.run(ensure_topics())
            typer.echo(f"topics created: {', '.join(created)}" if created else "topics: present")
    except Exception as exc:  # noqa: BLE001 - one line for the operator, exit 1 for the Job
        _fail(exc)


@app.command("projector")
def projector() -> None:
    """Run the projector in the foreground."""
    from services.projector.service import main

    asyncio.run(main())


@app.command("run")
def run(replicas: str = typer.Option("", "--replicas", help="instances per service, e.g. api=2,orchestrator=2"
                                     " (others run once; API instance k listens on CANARY_API_PORT + k - 1)"),
        brokers: int = typer.Option(1, "--brokers", help=_BROKERS_HELP)) -> None:
    """Bring the stack up and run every service in one supervised process group."""
    from services.ops import stack
    from services.ops.run import ReplicasError, parse_replicas, services_and_banner
    from services.ops.supervisor import supervise

    import os

    _check_brokers(brokers)
    try:
        counts = parse_replicas(replicas)
    except ReplicasError as exc:
        _fail(exc)
    if brokers > 1:
        os.environ["CANARY_KAFKA_BOOTSTRAP"] = stack.cluster_bootstrap(brokers)
        os.environ["CANARY_KAFKA_REPLICATION"] = str(brokers)

    # Development mode: a developer receives webhooks (and serves audio_url files) on
    # their own machine, so loopback targets are allowed; production never sets this.
    # Defaults written into the environment, not read: the supervised services inherit it.
    os.environ.setdefault("CANARY_ENV", "development")  # the embedded dev secrets are accepted
    os.environ.setdefault("CANARY_ALLOW_PRIVATE_URLS", "1")
    os.environ.setdefault("CANARY_LOG_FORMAT", "console")  # humans read these logs
    try:
        stack.up(brokers)
    except Exception as exc:
        _fail(exc)
    svcs, banner = services_and_banner(counts)
    asyncio.run(supervise(svcs, banner))


def _register_commands() -> None:
    """Every command group: each service's own (a module with `register(typer)`), then the
    ones this layer holds (flows: the IVR library; replay: ops)."""
    from services.api import cli as api_cli
    from services.cli import flows
    from services.ops import replay
    from services.recording import cli as recording_cli
    from services.telephony import cli as telephony_cli
    from services.transcription import cli as transcription_cli
    from services.tts import cli as tts_cli
    from services.webhooks import cli as webhooks_cli

    api_cli.register(app)
    telephony_cli.register(app)
    webhooks_cli.register(app)
    flows.register(app)
    media = typer.Typer(help="TTS, recording and transcription services.", no_args_is_help=True)
    app.add_typer(media, name="media")
    for part in (tts_cli, recording_cli, transcription_cli):
        part.register(media)
    replay.register(app)


def main() -> None:
    _register_commands()
    app()
