"""Schemathesis fuzzing of the OpenAPI document against a real uvicorn process: no 5xx,
whatever the input (valid and invalid bodies, parameters, headers)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from services.api.app import create_app
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

schema = schemathesis.openapi.from_dict(create_app().openapi())
# The API service's own operations; CANARY_FUZZ_ALL=1 also fuzzes the routers other
# services plug into the app (trunks, flows, webhooks ...).
if os.environ.get("CANARY_FUZZ_ALL") != "1":
    schema = schema.include(path_regex=r"^/(v1/voice/(calls|numbers|voices|recordings)|healthz|readyz)")


@pytest.fixture(scope="module")
def server(stack, tmp_path_factory):
    from services.common.kafka import ensure_topics
    from tests.integration.api.conftest import make_account

    prefix = f"t{uuid.uuid4().hex[:10]}."

    async def setup():
        await ensure_topics(partitions=1, prefix=prefix)
        return await make_account(cps=100000)

    acct = asyncio.run(setup())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("api") / "api.log"
    env = {**os.environ, "CANARY_TOPIC_PREFIX": prefix, "CANARY_API_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "services.api"], cwd=ROOT, env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    end = time.monotonic() + 120  # only bounds a hang: a loaded machine starts the API slowly
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > end:
                proc.kill()
                pytest.fail(f"the API did not start listening on {port}: {log.read_text()[-3000:]}")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", acct
    proc.terminate()
    proc.wait(10)
    assert b"Traceback" not in log.read_bytes(), log.read_text()[-3000:]


@schema.parametrize()
@settings(max_examples=int(os.environ.get("CANARY_FUZZ_EXAMPLES", "40")), deadline=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, server):
    base_url, acct = server
    headers = {"Authorization": f"Bearer {acct.key}"}
    response = case.call(base_url=base_url, headers=headers, timeout=15)
    assert response.status_code < 500, (case.method, case.path, case.body, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and {"code", "message", "field"} == set(body["error"]), body
