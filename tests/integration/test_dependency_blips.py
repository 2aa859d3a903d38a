"""Through a Postgres stall: the API's readiness and a service's health say so at once, and
everything comes back after.

Postgres is frozen for real (SIGSTOP on every server process, the way a stalled disk or a
long GC pause looks from outside), not mocked. The freeze is always lifted in `finally`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import httpx
import pytest

from tests.api_app import new_account, running_app
from tests.conftest import free_port, frozen, postgres_pids

pytestmark = pytest.mark.integration


def frozen_postgres():
    return frozen(postgres_pids())


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


async def _health(port: int) -> tuple[int, dict]:
    import orjson

    async with httpx.AsyncClient(timeout=5) as http:
        r = await http.get(f"http://127.0.0.1:{port}/healthz")
        return r.status_code, orjson.loads(r.content)


async def test_a_service_reports_degraded_while_postgres_stalls_and_ok_after(prefix, producer, tmp_path):
    """The projector, a real process: its /healthz turns 503 degraded while a batch waits on a
    frozen Postgres, and 200 ok again once Postgres is back, with the events applied."""
    from services.common import db
    from services.common.kafka import publish_many
    from tests.conftest import service_env, spawn
    from tests.integration.test_projector import call_events, wait_for

    port = free_port()
    schema = "p_" + uuid.uuid4().hex[:10]
    env = service_env(prefix, CANARY_PROJECTION_SCHEMA=schema, CANARY_HEALTH_PORT=str(port),
                      CANARY_HEALTH_STALL_S="2")
    proc = spawn("services.projector.service", env, tmp_path / "projector.log")
    pg = await db.connect()
    try:
        async def up():
            try:
                return (await _health(port))[0] == 200
            except httpx.TransportError:
                return False
        await wait_for(up, timeout=60)
        status, report = await _health(port)
        assert report["service"] == "projector" and report["status"] == "ok" and report["problems"] == []
        first, second = call_events(1, 4), call_events(1, 4)
        await publish_many(producer, prefix + "voice.call.events", first)

        async def applied(evs):
            try:
                return await pg.fetchval(f"SELECT count(*) FROM {schema}.call_events WHERE call_id = $1",
                                         evs[0].call_id) == len(evs)
            except Exception:  # the schema is the projector's to create
                return False
        await wait_for(lambda: applied(first), timeout=60)
        with frozen_postgres():
            await publish_many(producer, prefix + "voice.call.events", second)  # a batch that must wait

            async def degraded():
                status, report = await _health(port)
                return (status, report) if status == 503 else None
            status, report = await wait_for(degraded, timeout=30)
            assert report["status"] == "degraded"
            assert [p["what"] for p in report["problems"]] == ["main loop"], report
        await wait_for(lambda: applied(second), timeout=60)
        await wait_for(up, timeout=30)
        assert proc.poll() is None, "the projector exited"
    finally:
        await pg.close()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        cleanup = await db.connect()
        await cleanup.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await cleanup.close()
