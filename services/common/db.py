"""Postgres access: pools and the ordered-SQL migration runner.

Why a hand-written runner: the maintained tools (alembic, yoyo) need a synchronous
driver and bring SQLAlchemy or psycopg along; our stack is asyncpg only, and the whole
job is "apply numbered .sql files once, in order, in a transaction, refuse if an
applied file changed" — about forty lines.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import asyncpg
import orjson

from services.common.config import settings

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_KEY = 0x6361_6E61_7279  # pg advisory lock: one migrator at a time


class MigrationError(RuntimeError):
    pass


async def connect(url: str | None = None) -> asyncpg.Connection:
    return await asyncpg.connect(url or settings().database_url, timeout=10)


ACQUIRE_TIMEOUT_S = 5.0  # a pool with every connection stuck (Postgres stalled) fails fast, not forever


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    return None


class BoundedPool(asyncpg.pool.Pool):
    """An asyncpg pool whose ``acquire`` gives up after a default timeout (asyncpg waits
    forever): the caller gets a TimeoutError to answer 503 or retry, instead of a hang.
    ``fetch``/``execute``/... acquire through it too."""

    __slots__ = ("acquire_timeout",)

    def acquire(self, *, timeout: float | None = None):
        return super().acquire(timeout=timeout if timeout is not None else self.acquire_timeout)


async def create_pool(url: str | None = None, *, acquire_timeout: float | None = ACQUIRE_TIMEOUT_S,
                      **kw) -> asyncpg.Pool:
    """A :class:`BoundedPool` (asyncpg.create_pool's arguments and defaults)."""
    kw.setdefault("min_size", 1)
    kw.setdefault("max_size", 10)
    kw.setdefault("command_timeout", 30)
    kw.setdefault("max_queries", 50000)
    kw.setdefault("max_inactive_connection_lifetime", 300.0)
    # asyncpg resets a connection on every release (advisory unlocks, CLOSE ALL, UNLISTEN,
    # RESET ALL): one more round trip per request. Ours hold no session state (settings
    # are per transaction, SET LOCAL; locks are transaction locks; no LISTEN, no cursors
    # outside a transaction), so there is nothing to reset.
    kw.setdefault("reset", _nothing_to_reset)
    pool = BoundedPool(url or settings().database_url, loop=None, connection_class=asyncpg.Connection,
                       record_class=asyncpg.Record, **kw)
    pool.acquire_timeout = acquire_timeout
    return await pool



async def init_connection(conn: asyncpg.Connection) -> None:
    """jsonb <-> Python via orjson on every connection (a pool's `init`)."""
    # Binary format so COPY works too; jsonb's binary form is a version byte (1) + the text.
    await conn.set_type_codec("jsonb", encoder=lambda v: b"\x01" + orjson.dumps(v),
                              decoder=lambda b: orjson.loads(b[1:]), schema="pg_catalog", format="binary")

def migration_files(directory: Path = MIGRATIONS) -> list[tuple[str, str, str]]:
    """(name, sql, sha256) for every NNNN_*.sql file, in order."""
    out = []
    for path in sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        sql = path.read_text()
        out.append((path.name, sql, hashlib.sha256(sql.encode()).hexdigest()))
    return out


async def migrate(url: str | None = None, directory: Path = MIGRATIONS) -> list[str]:
    """Apply pending migrations; returns the names applied. Refuses edited history."""
    conn = await connect(url)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        done = {r["name"]: r["sha256"] for r in await conn.fetch("SELECT name, sha256 FROM schema_migrations")}
        for name, sql, digest in migration_files(directory):
            if name in done:
                if done[name] != digest:
                    raise MigrationError(f"migration {name} was edited after it was applied; add a new one")
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name, sha256) VALUES ($1, $2)", name, digest)
            applied_now.append(name)
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
        finally:
            await conn.close()
    return applied_now
