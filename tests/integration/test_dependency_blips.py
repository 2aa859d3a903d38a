"""The API through a Postgres stall: readiness says so at once, and everything comes back after.

Postgres is frozen for real (SIGSTOP on every server process, the way a stalled disk or a
long GC pause looks from outside), not mocked. The freeze is always lifted in `finally`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager

import httpx
import pytest

from tests.api_app import new_account, running_app

pytestmark = pytest.mark.integration


def _postgres_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@contextmanager
def frozen_postgres():
    pids = _postgres_pids()
    assert pids, "no postgres process to freeze"
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


async def test_readyz_answers_503_at_once_while_postgres_is_stalled_and_200_after(monkeypatch):
    _, _, key, _ = await new_account("blip")
    async with running_app(f"blip{uuid.uuid4().hex[:6]}.", monkeypatch) as app:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                     timeout=20) as http:
            assert (await http.get("/readyz")).status_code == 200
            with frozen_postgres():
                t0 = time.perf_counter()
                r = await http.get("/readyz")
                took = time.perf_counter() - t0
                assert r.status_code == 503, r.text
                assert r.json()["postgres"] is False and r.json()["kafka"] is True
                assert r.headers["retry-after"] == "1"
                assert took < 3, took  # the check is bounded at 1 s (not the 30 s query timeout)
            for _ in range(50):  # back once Postgres is
                r = await http.get("/readyz")
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.2)
            assert r.status_code == 200, r.text
            r = await http.get("/v1/voice/calls", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
