"""The real API for the SDK interop tests, and a key for it.

The API is the one at CANARY_API_URL (default http://127.0.0.1:8080) when it answers;
otherwise the local stack is brought up and `python -m services.api` is started on a free
port for the session. The key is CANARY_API_KEY when set, else a fresh one from
`canary-voice dev-setup` (account `dev`, +15559876543 verified). Tests skip, saying why,
only when no API can be reached or started.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.interop.api_stack import ApiDidNotStart, healthy, own_api

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


def _cli() -> list:
    exe = Path(sys.executable).with_name("canary-voice")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from services.cli import main; main()"]


@pytest.fixture(scope="session")
def api() -> Iterator[Api]:
    url = (os.environ.get("CANARY_API_URL") or DEFAULT_URL).rstrip("/")
    with ExitStack() as stack:
        own = False
        if not healthy(url):
            if os.environ.get("CANARY_API_URL"):
                pytest.skip(f"the API is unreachable at CANARY_API_URL={url}")
            try:
                url = stack.enter_context(own_api("sdk"))
            except ApiDidNotStart as exc:
                pytest.skip(f"the API is unreachable at {DEFAULT_URL} and {exc}")
            own = True
        key = os.environ.get("CANARY_API_KEY")
        if not key:
            out = subprocess.run(_cli() + ["dev-setup"], cwd=ROOT, capture_output=True, text=True, timeout=120)
            lines = [ln.strip() for ln in out.stdout.splitlines() if ln.strip().startswith("sk_")]
            assert out.returncode == 0 and lines, f"canary-voice dev-setup failed:\n{out.stdout}\n{out.stderr}"
            key = lines[-1]
        yield Api(url, key, own_pipeline=own)


@pytest.fixture
def client(api):
    from canary import Canary

    with Canary(api.key, base_url=api.url) as c:
        yield c
