"""The console in a real browser (Debian's chromium, driven by Playwright) against this
checkout's API and call pipeline, started for the session (tests/interop/api_stack.py),
signed in as a fresh account.

Screenshots go to each test's tmp_path; with CANARY_CONSOLE_SHOTS=DIR they are also
copied there (`CANARY_CONSOLE_SHOTS=docs/img` refreshes the README's).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.api_app import new_account
from tests.interop.api_stack import ROOT, ApiDidNotStart, own_api

DIST = ROOT / "console" / "dist" / "index.html"
# Who transcribes recordings and delivers webhooks, besides the SDK tests' pipeline.
# The live transcript of a call in progress comes from the real-time worker.
CONSOLE_MODULES = ("services.transcription.worker", "services.transcription.live", "services.webhooks")
TIMEOUT_MS = 180_000  # bounds a hang only: every wait is for a real outcome, however long a loaded machine takes


@dataclass
class Console:
    url: str
    key: str

    def client(self) -> httpx.Client:
        """The API as this account (to check what the browser did)."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)


@pytest.fixture(scope="session")
def console() -> Iterator[Console]:
    assert DIST.is_file(), "console/dist is missing: run `make install` (it builds console/)"
    try:
        with own_api("console", CONSOLE_MODULES, env={"CANARY_ALLOW_PRIVATE_URLS": "1"}) as url:
            _, _, key, _ = asyncio.run(new_account("console"))
            yield Console(url, key)
    except ApiDidNotStart as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def browser():
    """One chromium for this module's tests. Module scope, not session: Playwright's sync API
    keeps an event loop running in this thread until it stops, and every asyncio test after
    it would find that loop running."""
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (deploy/scripts/install-system-deps.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: the tests may run as root; autoplay: the recording plays on a click anyway.
        b = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(console, browser):  # the stack first: Playwright runs an event loop of its own in this thread
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    ctx.set_default_timeout(TIMEOUT_MS)
    p = ctx.new_page()
    try:
        yield p
    finally:
        ctx.close()


def sign_in(page, console: Console) -> None:
    """Sign in on the console's own form."""
    from playwright.sync_api import expect

    page.goto(console.url + "/console/")
    page.get_by_label("API key").fill(console.key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Console")).to_be_visible()


def screenshot(page, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot in the test's output dir (and CANARY_CONSOLE_SHOTS when set)."""
    out = tmp_path / f"{name}.png"
    page.screenshot(path=str(out), full_page=True)
    if shots := os.environ.get("CANARY_CONSOLE_SHOTS"):
        dest = Path(shots) if Path(shots).is_absolute() else ROOT / shots
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, dest / out.name)
    return out
