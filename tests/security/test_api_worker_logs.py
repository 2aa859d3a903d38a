"""Secrets never reach the API's logs, whatever process writes them.

With CANARY_API_WORKERS>1 uvicorn serves from worker processes it spawns itself; each
of them must configure logging like the parent (JSON lines, tracebacks without frame
locals, the redaction processor), or an exception logged while handling a request
dumps the request's headers, API key included.

The test starts the real API with two workers against the local stack and makes its
handler fail server-side: the API is pointed at a projection schema of its own that
does not exist (dropped, should the API have created it, once the workers have
started), so GET /v1/voice/calls/{id} raises inside the handler (a 500, and
`unhandled_error` logged with the traceback).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT

WORKERS = 2
STARTED = b"Application startup complete."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _sql(statement: str) -> None:
    from services.common import db

    conn = await db.connect()
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _wait_for(log: Path, needle: bytes, count: int, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if log.read_bytes().count(needle) >= count:
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail(f"the API did not start {count} workers:\n{log.read_text(errors='replace')[-4000:]}")


@pytest.mark.integration
@pytest.mark.parametrize("log_format", ["json", "console"])
def test_worker_logs_do_not_carry_the_api_key(stack, tmp_path, log_format):
    from tests.integration.api.conftest import make_account

    acct = asyncio.run(make_account())
    schema = f"sec_{uuid.uuid4().hex[:12]}"
    port = _free_port()
    log = tmp_path / "api.log"
    env = {**os.environ, "CANARY_API_WORKERS": str(WORKERS), "CANARY_API_PORT": str(port),
           "CANARY_API_LOG_LEVEL": "info", "CANARY_PROJECTION_SCHEMA": schema,
           "CANARY_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}.", "PYTHONUNBUFFERED": "1"}
    env.pop("CANARY_LOG_FORMAT", None)
    if log_format == "console":
        env["CANARY_LOG_FORMAT"] = "console"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.api"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for(log, STARTED, WORKERS, proc)
        asyncio.run(_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        statuses = []
        for _ in range(4 * WORKERS):  # a fresh connection each time, to reach both workers
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=15) as http:
                r = http.get("/v1/voice/calls/call_securitytest1",
                             headers={"Authorization": f"Bearer {acct.key}", "Connection": "close"})
                statuses.append(r.status_code)
                assert acct.key not in r.text
        time.sleep(0.5)  # let the workers flush their last lines
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        asyncio.run(_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))

    text = log.read_text(errors="replace")
    # The precondition: the requests did fail inside the handler, and that was logged.
    assert statuses == [500] * len(statuses), (statuses, text[-3000:])
    assert "unhandled_error" in text and "UndefinedTable" in text, text[-3000:]
    secret_part = acct.key.split("_", 2)[2]
    assert acct.key not in text and secret_part not in text, text[-6000:]
    assert "Bearer sk_" not in text, text[-6000:]
    # Tracebacks come without frame locals (rich's "locals" panels, or `scope = {...}` dumps).
    assert "'headers':" not in text and "scope = " not in text, text[-6000:]


KEY = "sk_live_" + "Q7" * 16
SECRETS = (KEY, "hunter2", "whsec_R2d2C3po00000000", "Zm9vOmJhcg", "opaque-token-1")

_EMIT = r"""
import logging, sys
from services.common.logging import configure

log = configure("t")
key, whsec = sys.argv[1], sys.argv[2]


def handler(scope):
    api_key = key  # a local: must not be printed with the traceback
    raise RuntimeError(f"upstream refused Authorization: Bearer {api_key}")


try:
    handler({"headers": [(b"authorization", b"Bearer " + key.encode())]})
except RuntimeError:
    log.exception("unhandled_error", headers={"Authorization": "Basic Zm9vOmJhcg=="},
                  request={"body": {"password": "hunter2", "webhook": {"signing_secret": whsec}}},
                  dsn="postgresql://canary:hunter2@db:5432/canary", note=f"retrying with {key}",
                  pairs=[("authorization", "opaque-token-1")])
    logging.getLogger("uvicorn.error").exception("Exception in ASGI application %s", key)
log.info(f"Authorization: Bearer {key}", api_key=key, url="https://x/media?expires=1&signature=abc123def")
"""


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_redaction_masks_secrets_anywhere_in_an_event(log_format):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARY_LOG")}
    if log_format == "console":
        env["CANARY_LOG_FORMAT"] = "console"
    out = subprocess.run([sys.executable, "-c", _EMIT, KEY, SECRETS[2]], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    # every line was written, the tracebacks too ...
    assert text.count("unhandled_error") == 1 and "Exception in ASGI application" in text, text
    assert text.count("RuntimeError") >= 2 and "sk_live_***" in text, text
    # ... and no secret made it
    for secret in SECRETS + ("abc123def",):
        assert secret not in text, (secret, text)
    assert "api_key = " not in text, text  # no frame locals
