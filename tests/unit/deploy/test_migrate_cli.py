"""`canary-voice migrate` (the Kubernetes Job, compose's migrate service) and the health
responder's bind address (the kubelet probes the pod's address, not loopback)."""

from __future__ import annotations

import asyncio

import httpx
from typer.testing import CliRunner

from services.cli import _register_commands, app


def _run(monkeypatch, *args, fail_topics=False):
    calls = []

    async def migrate():
        calls.append("migrations")
        return ["0001_init.sql"]

    async def projections():
        calls.append("projections")
        return "projection"

    async def topics():
        calls.append("topics")
        if fail_topics:
            raise ConnectionError("kafka:9092 unreachable")
        return ["voice.call.events"]

    monkeypatch.setattr("services.common.db.migrate", migrate)
    monkeypatch.setattr("services.ops.stack.ensure_projections", projections)
    monkeypatch.setattr("services.common.kafka.ensure_topics", topics)
    _register_commands()
    return CliRunner().invoke(app, ["migrate", *args]), calls


def test_migrate_applies_migrations_then_projections_then_topics(monkeypatch):
    result, calls = _run(monkeypatch)
    assert result.exit_code == 0, result.output
    assert calls == ["migrations", "projections", "topics"]
    assert "migrations: 1 applied" in result.output and "topics created: voice.call.events" in result.output


def test_migrate_without_topics(monkeypatch):
    result, calls = _run(monkeypatch, "--no-topics")
    assert result.exit_code == 0 and calls == ["migrations", "projections"]


def test_a_failed_migration_fails_the_job(monkeypatch):
    result, _ = _run(monkeypatch, fail_topics=True)
    assert result.exit_code == 1  # the Job retries (backoffLimit), the rollout waits
    assert "kafka:9092 unreachable" in result.output


async def test_health_responder_binds_the_configured_address(monkeypatch):
    from services.common.config import settings
    from services.common.health import serve_health

    monkeypatch.setenv("CANARY_HEALTH_HOST", "0.0.0.0")
    assert settings().health_host == "0.0.0.0"
    server = await serve_health(0, "test", settings().health_host)
    try:
        host, port = server.sockets[0].getsockname()[:2]
        assert host == "0.0.0.0"
        async with httpx.AsyncClient() as client:
            r = await client.get(f"http://127.0.0.1:{port}/healthz")
        # reachable on the configured address (healthy or not: other tests' loops may have
        # left this process's health degraded; what is checked here is the binding)
        assert r.status_code in (200, 503) and r.json()["service"] == "test"
    finally:
        server.close()
        await server.wait_closed()
    monkeypatch.delenv("CANARY_HEALTH_HOST")
    assert settings().health_host == "127.0.0.1"  # the default stays loopback-only
