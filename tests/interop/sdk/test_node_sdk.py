"""Runs the Node SDK's interop tests (`node --test`) against the same API as the Python ones."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import NODE_SDK

pytestmark = pytest.mark.interop
HERE = Path(__file__).resolve().parent


def test_node_sdk_against_the_api(api):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (Node 18+ is needed for the @canary/node SDK)")
    if not (NODE_SDK / "dist" / "esm" / "index.js").exists() and not (NODE_SDK / "node_modules" / "typescript").exists():
        pytest.fail("sdk/node is not built: run `npm ci && npm run build` in sdk/node")
    out = subprocess.run([node, "--test", str(HERE / "node_sdk.test.mjs")], env=api.env(),
                         capture_output=True, text=True, timeout=300)
    summary = "\n".join(line for line in out.stdout.splitlines() if line.startswith(("# ", "not ok")))
    assert out.returncode == 0, f"node --test failed:\n{out.stdout[-6000:]}\n{out.stderr[-2000:]}"
    passed = re.search(r"^# pass (\d+)$", out.stdout, re.M)
    assert "# fail 0" in out.stdout and passed and int(passed.group(1)) >= 10, summary
