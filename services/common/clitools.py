"""Small helpers the service CLIs share: a clean error exit and a one-shot database session."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import typer


def fail(msg: str) -> None:
    """Print an error and exit 1 (no traceback for expected errors)."""
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(1)


def with_db(fn: Callable[[Any], Awaitable[Any]], expected: tuple[type[Exception], ...] = ()) -> Any:
    """Run `fn(conn)` on a migrated database; `expected` errors (with .message) exit cleanly."""

    async def run() -> Any:
        from services.common import db

        await db.migrate()
        conn = await db.connect()
        try:
            return await fn(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except expected as exc:
        fail(getattr(exc, "message", str(exc)))
    except (OSError, TimeoutError) as exc:
        fail(f"cannot reach Postgres ({exc}); is the stack up? (canary-voice stack up)")
