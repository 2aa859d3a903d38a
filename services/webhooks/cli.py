"""`canary-voice webhooks ...`: run the worker, sign/verify payloads by hand."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    wh = typer.Typer(help="Signed webhook delivery with durable retries.", no_args_is_help=True)
    app.add_typer(wh, name="webhooks")

    @wh.command("run")
    def run() -> None:
        """Run the webhook worker in the foreground."""
        from services.webhooks.service import main

        asyncio.run(main())

    @wh.command("verify")
    def verify(secret: str = typer.Option(..., envvar="CANARY_SIGNING_SECRET", help="account signing secret"),
               signature: str = typer.Option(..., "--signature", help="the Canary-Signature header"),
               body: Path = typer.Argument(..., help="file with the raw request body ('-' for stdin)"),
               tolerance: int = typer.Option(300, help="max age in seconds; 0 = no age check")) -> None:
        """Check a received webhook's signature (exit 1 if it does not verify)."""
        from services.common import signing

        raw = sys.stdin.buffer.read() if str(body) == "-" else body.read_bytes()
        try:
            signing.verify(secret, raw, signature, tolerance=tolerance or None)
        except signing.SignatureError as exc:
            typer.secho(f"invalid: {exc}", fg="red", err=True)
            raise typer.Exit(1)
        typer.echo("valid")
