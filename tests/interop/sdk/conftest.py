"""The real API for the SDK interop tests, and a key for it.

The API is the one at CANARY_API_URL (default http://127.0.0.1:8080) when it answers;
otherwise the local stack is brought up and `python -m services.api` is started on a free
port for the session. The key is CANARY_API_KEY when set, else a fresh one from
`canary-voice dev-setup` (account `dev`, +15559876543 verified). Tests skip, saying why,
only when no API can be reached or started.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]
PY_SDK_SRC = ROOT / "sdk" / "python" / "src"
NODE_SDK = ROOT / "sdk" / "node"
SNIPPETS = ROOT / "sdk" / "testdata" / "docs_snippets"
DEFAULT_URL = "http://127.0.0.1:8080"

try:  # the SDK as installed (`pip install -e sdk/python`), else straight from the tree
    import canary  # noqa: F401
except ImportError:
    sys.path.insert(0, str(PY_SDK_SRC))


@dataclass
class Api:
    url: str
    key: str
    own_pipeline: bool = False  # the fixture started the call pipeline itself

    def env(self) -> dict:
        env = dict(os.environ)
        env["CANARY_API_URL"] = self.url
        env["CANARY_API_KEY"] = self.key
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PY_SDK_SRC), env.get("PYTHONPATH", "")) if p)
        return env


def _healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=timeout).status_code < 500
    except httpx.HTTPError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli() -> list:
    exe = Path(sys.executable).with_name("canary-voice")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from services.cli import main; main()"]


@pytest.fixture(scope="session")
def api() -> Iterator[Api]:
    url = (os.environ.get("CANARY_API_URL") or DEFAULT_URL).rstrip("/")
    proc: Optional[subprocess.Popen] = None
    pipeline: list = []
    log = None
    if not _healthy(url):
        if os.environ.get("CANARY_API_URL"):
            pytest.skip(f"the API is unreachable at CANARY_API_URL={url}")
        try:
            from services.ops import stack

            stack.up()
        except Exception as exc:  # noqa: BLE001
            pytest.skip(f"the API is unreachable at {url} and the local stack could not be started: {exc}")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        # The whole call pipeline on topics and tables of its own, so the SDKs see calls
        # really happen (and nothing touches a developer's `make run` data).
        prefix = f"sdk{port}."
        import asyncio

        from services.common.kafka import ensure_topics
        asyncio.run(ensure_topics(partitions=2, prefix=prefix))
        asyncio.run(stack.ensure_projections(f"sdk{port}"))  # the API reads them from its first request
        env = dict(os.environ, CANARY_API_HOST="127.0.0.1", CANARY_API_PORT=str(port), CANARY_TOPIC_PREFIX=prefix,
                   CANARY_PUBLIC_URL=url,
                   CANARY_PROJECTION_SCHEMA=f"sdk{port}", CANARY_SANDBOX_SPEED="4", PYTHONUNBUFFERED="1")
        log = open(ROOT / ".local" / f"sdk-interop-api-{port}.log", "wb") if (ROOT / ".local").is_dir() else None
        proc = subprocess.Popen([sys.executable, "-m", "services.api"], cwd=ROOT, env=env,
                                stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)
        pipeline = [subprocess.Popen([sys.executable, "-m", m], cwd=ROOT, env=env, stdout=log or subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT)
                    for m in ("services.orchestrator.service", "services.telephony.gateway", "services.tts.worker",
                              "services.recording.worker", "services.projector.service")]
        deadline = time.monotonic() + 120  # only bounds a hang: a loaded machine starts it slowly
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.skip(f"the API is unreachable at {DEFAULT_URL} and `python -m services.api` did not start")
            time.sleep(0.3)
    key = os.environ.get("CANARY_API_KEY")
    if not key:
        out = subprocess.run(_cli() + ["dev-setup"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        lines = [ln.strip() for ln in out.stdout.splitlines() if ln.strip().startswith("sk_")]
        assert out.returncode == 0 and lines, f"canary-voice dev-setup failed:\n{out.stdout}\n{out.stderr}"
        key = lines[-1]
    try:
        yield Api(url, key, own_pipeline=bool(pipeline))
    finally:
        for p in pipeline:
            p.terminate()
        for p in pipeline:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if log is not None:
            log.close()


@pytest.fixture
def client(api):
    from canary import Canary

    with Canary(api.key, base_url=api.url) as c:
        yield c
