"""Shared fixtures: the real local stack (Kafka + Postgres), isolated per test.

Tests share one broker and one database but never each other's data: each gets its
own topic prefix and projection schema.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]

# The tests (and the benches, which import this module) run services on the embedded
# development secrets: outside development the services refuse them. A test that wants
# production sets CANARY_ENV itself.
os.environ.setdefault("CANARY_ENV", "development")
# Gateways built inside the test process would raise the whole test runner to real-time
# scheduling; tests/unit/telephony/test_priority.py checks the priority itself.
os.environ.setdefault("CANARY_MEDIA_PRIORITY", "normal")


@pytest.fixture(scope="session")
def stack():
    """Make sure Kafka and Postgres are up (fast when they already are)."""
    from services.ops import stack as st

    st.up()
    return st


_BROKER_LEVELS = ("integration", "e2e", "interop", "security", "chaos")


def _with_admin(work, timeout: float = 30.0):
    """``await work(admin)`` on a Kafka admin client, in a thread of its own (outside the
    tests' event loop); None when the broker cannot be reached (a unit-only run)."""
    import asyncio
    import threading

    from aiokafka.admin import AIOKafkaAdminClient

    from services.common.config import settings

    out: list = [None]

    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings().kafka_bootstrap, request_timeout_ms=10000)
        try:
            await asyncio.wait_for(admin.start(), 5)
            out[0] = await work(admin)
        except Exception:  # noqa: BLE001 - best effort: housekeeping of the shared broker
            pass
        finally:
            try:
                await admin.close()
            except Exception:  # noqa: BLE001
                pass

    t = threading.Thread(target=lambda: asyncio.run(run()))
    t.start()
    t.join(timeout)
    return out[0]


def _topics_now() -> set[str] | None:
    """The broker's topics (None if it cannot be asked quickly)."""
    async def ask(admin):
        return set(await admin.list_topics())
    return _with_admin(ask, timeout=15)


def delete_topics(names: list[str]) -> None:
    """Delete these topics (best effort: a topic left behind costs only broker time)."""
    async def delete(admin):
        for i in range(0, len(names), 100):
            await admin.delete_topics(names[i:i + 100])
    _with_admin(delete)


def free_port() -> int:
    """A TCP port nobody listens on right now, on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_pids() -> list[int]:
    """Every process of the Postgres server (to freeze it for real with SIGSTOP)."""
    out = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def broker_pid() -> int:
    """The Kafka broker's process."""
    out = subprocess.run(["pgrep", "-f", "java.* kafka\\.Kafka "], capture_output=True, text=True).stdout.split()
    assert out, "no Kafka broker process"
    return int(out[0])


@contextmanager
def frozen(pids: list[int]):
    """SIGSTOP `pids` for the block, SIGCONT them after, whatever happens in it."""
    import signal

    assert pids, "nothing to freeze"
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    try:
        yield
    finally:
        for p in pids:
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass


# The topic prefixes this test run created (every test's topics are made through
# ensure_topics, here wrapped to note the prefix): only those are ever deleted, so two
# runs on one broker (two checkouts, a run beside `make run` or a bench) never delete
# each other's topics mid-test.
_OUR_PREFIXES: set[str] = set()


def _note_prefixes() -> None:
    from services.common import kafka

    real = kafka.ensure_topics
    if getattr(real, "notes_prefixes", False):
        return

    async def ensure_topics(bootstrap=None, partitions=None, prefix=None, **kw):
        if prefix:
            _OUR_PREFIXES.add(prefix)
        return await real(bootstrap, partitions, prefix, **kw)

    ensure_topics.notes_prefixes = True  # type: ignore[attr-defined]
    ensure_topics.__doc__ = real.__doc__
    kafka.ensure_topics = ensure_topics


_note_prefixes()


@pytest.fixture(scope="module", autouse=True)
def _drop_the_modules_topics(request):
    """Delete the topics a test module created, once it is done with them.

    Every test works on topics of its own prefix; left behind, they add up to thousands of
    partitions over a run, and a broker's CPU at rest and its restart time grow with them
    (a restart took 90 s at 11,000). Module scope: the e2e stacks live per module. Only
    topics under a prefix of this run go (see _OUR_PREFIXES)."""
    parts = Path(str(request.node.path)).parts
    if not any(level in parts for level in _BROKER_LEVELS):
        yield
        return
    before = _topics_now()
    yield
    if before is None:
        return
    after = _topics_now() or set()
    from events import topics as catalog

    keep = {t.name for t in catalog.topic_specs(None)}
    ours = tuple(_OUR_PREFIXES)
    new = sorted(t for t in after - before if t not in keep and ours and t.startswith(ours))
    if new:
        delete_topics(new)


@pytest.fixture
async def prefix(stack):
    """A fresh topic prefix with the four service topics created (2 partitions)."""
    from services.common.kafka import ensure_topics

    p = f"t{uuid.uuid4().hex[:10]}."
    await ensure_topics(partitions=2, prefix=p)
    return p


@pytest.fixture
async def pg(stack):
    """An asyncpg connection with the jsonb codec."""
    from services.common import db

    conn = await db.connect()
    await db.init_connection(conn)
    yield conn
    await conn.close()


@pytest.fixture
async def pool(stack):
    """A small asyncpg pool (what the API's routers get from `await runtime.db()`)."""
    from services.common import db

    p = await db.create_pool(min_size=1, max_size=2)
    yield p
    await p.close()


class PoolRuntime:
    """The part of the API's Runtime the routers use: `await runtime.db()`."""

    def __init__(self, pool):
        self.pool = pool

    async def db(self):
        return self.pool


def router_client(router, account_id: str, pool) -> httpx.AsyncClient:
    """One API router on its own, called as `account_id` (API-key auth stood in), on `pool`."""
    from fastapi import FastAPI

    from services.api.auth import current_account
    from services.api.errors import install
    from services.common.accounts import Account

    app = FastAPI()
    install(app)
    app.include_router(router)
    app.dependency_overrides[current_account] = lambda: Account(id=account_id, name=account_id, mode="test")
    app.state.runtime = PoolRuntime(pool)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.fixture
async def producer(stack):
    from services.common.kafka import make_producer

    p = make_producer()
    await p.start()
    yield p
    await p.stop()


def service_env(prefix: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "CANARY_ENV": "development", "CANARY_TOPIC_PREFIX": prefix, "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the test process dies, however it dies.

    A test run killed from outside (a timeout, Ctrl-C twice) never reaches its fixture
    teardown; without this its services would live on and load every later run."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def spawn(module: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start a service as a real process (so a test can SIGKILL it)."""
    return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, preexec_fn=die_with_parent,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
