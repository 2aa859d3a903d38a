"""The real API and call pipeline as processes, on a free port and on topics and tables of
their own: what the interop tests (SDKs, console) run against when they need their own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

from tests.conftest import die_with_parent, free_port

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ("services.orchestrator.service", "services.telephony.gateway", "services.tts.worker",
            "services.recording.worker", "services.projector.service")


class ApiDidNotStart(RuntimeError):
    """The stack or `python -m services.api` could not be started (the reason is the message)."""


def healthy(url: str, timeout: float = 1.0) -> bool:
    """Whether an API answers at `url`."""
    try:
        return httpx.get(url + "/healthz", timeout=timeout).status_code < 500
    except httpx.HTTPError:
        return False


@contextmanager
def own_api(label: str, extra_modules: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Iterator[str]:
    """The API (this checkout's code) and the call pipeline (+ `extra_modules`) for the block;
    yields the API's URL. Calls really happen (sandbox at 4x speed) and nothing touches a
    developer's `make run` data."""
    from services.common.kafka import ensure_topics
    from services.ops import stack

    try:
        stack.up()
    except Exception as exc:  # noqa: BLE001 - any reason is reported the same way
        raise ApiDidNotStart(f"the local stack could not be started: {exc}") from exc
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    prefix, schema = f"{label}{port}.", f"{label}{port}"
    asyncio.run(ensure_topics(partitions=2, prefix=prefix))
    asyncio.run(stack.ensure_projections(schema))  # the API reads them from its first request
    full_env = dict(os.environ, CANARY_API_HOST="127.0.0.1", CANARY_API_PORT=str(port), CANARY_TOPIC_PREFIX=prefix,
                    CANARY_PUBLIC_URL=url, CANARY_PROJECTION_SCHEMA=schema, CANARY_SANDBOX_SPEED="4",
                    PYTHONUNBUFFERED="1", **(env or {}))
    log = open(ROOT / ".local" / f"{label}-interop-api-{port}.log", "wb") if (ROOT / ".local").is_dir() else None
    out = log or subprocess.DEVNULL
    # die_with_parent: a test run killed from outside must not leave this stack running.
    procs = [subprocess.Popen([sys.executable, "-m", "services.api"], cwd=ROOT, env=full_env, stdout=out,
                              stderr=subprocess.STDOUT, preexec_fn=die_with_parent)]
    procs += [subprocess.Popen([sys.executable, "-m", m], cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                               preexec_fn=die_with_parent)
              for m in (*PIPELINE, *extra_modules)]
    try:
        deadline = time.monotonic() + 120  # only bounds a hang: a loaded machine starts it slowly
        while not healthy(url):
            if procs[0].poll() is not None or time.monotonic() > deadline:
                raise ApiDidNotStart("`python -m services.api` did not start")
            time.sleep(0.3)
        yield url
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        if log is not None:
            log.close()
