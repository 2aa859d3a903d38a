"""What the in-process API tests share: accounts with a test and a live key, and the
real API app (its Runtime started) on a test's topic prefix."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from services.common import accounts, db


async def new_account(label: str, cps: float = 1000.0,
                      number: str | None = "+15559876543") -> tuple[str, str, str, str]:
    """A fresh account (name ``<label>-<random>``) -> (id, name, test key, live key)."""
    await db.migrate()
    conn = await db.connect()
    try:
        a = await accounts.create_account(conn, f"{label}-{uuid.uuid4().hex[:12]}", cps)
        if number:
            await accounts.ensure_number(conn, a["id"], number)
        _, test = await accounts.create_key(conn, a["id"], "test")
        _, live = await accounts.create_key(conn, a["id"], "live")
        return a["id"], a["name"], test, live
    finally:
        await conn.close()


@asynccontextmanager
async def running_app(prefix: str, monkeypatch: Any) -> AsyncIterator[Any]:
    """The API app with its Runtime started, on the topics of ``prefix``."""
    from services.api.app import create_app
    from services.api.runtime import Runtime

    monkeypatch.setenv("CANARY_TOPIC_PREFIX", prefix)
    rt = Runtime()
    await rt.start()
    try:
        yield create_app(rt)
    finally:
        await rt.stop()
