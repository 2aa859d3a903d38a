"""The console end to end in a real browser: a sandbox call watched live to `completed`,
its recording played and its transcript shown; a 2-level menu built, fixed, saved and
simulated in the IVR builder. Every check is against what the API itself says."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from tests.interop.console.conftest import TIMEOUT_MS, screenshot, sign_in

pytestmark = pytest.mark.interop


def _transcript_lines(api, call_id: str) -> list[str]:
    """The lines the call's transcript has, by the API: its segments in time order, else its
    text (waiting for the transcript: it comes after the call and its recording)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        events = api.get(f"/v1/voice/calls/{call_id}/events").json()["data"]
        done = [e for e in events if e["type"] == "transcription.completed"]
        if done:
            break
        assert time.monotonic() < deadline, "the call has no transcript"
        time.sleep(0.2)
    data = done[-1]["data"]
    parts = [s["text"].strip() for s in sorted(data.get("segments") or [], key=lambda s: s.get("start", 0))
             if s.get("text", "").strip()]
    return parts or [data["text"].strip()]


def test_place_a_sandbox_call_watch_it_complete_and_play_it(page, console, tmp_path):
    from playwright.sync_api import expect

    sign_in(page, console)
    callee = "+1555777" + str(uuid.uuid4().int % 10000).zfill(4)
    page.get_by_role("link", name="Sandbox").click()
    form = page.get_by_role("form", name="Add a scripted callee")
    form.get_by_label("Number").fill(callee)
    form.get_by_label("Acts after answering (s)").fill("0.5")
    form.get_by_label("Says").fill("I would like to pay my bill please")
    form.get_by_role("button", name="Save callee").click()
    expect(page.get_by_role("button", name=f"Remove callee {callee}")).to_be_visible()
    with console.client() as api:
        assert callee in {c["number"] for c in api.get("/v1/voice/sandbox/callees").json()["data"]}

    page.get_by_role("link", name="Place a call").click()
    page.get_by_label("To", exact=True).fill(callee)
    page.get_by_label("Text", exact=True).fill("Hello from the Canary console. Tell me what you need.")
    page.get_by_label("Record the call").check()
    page.get_by_label("Transcribe it").check()
    expect(page.get_by_role("tabpanel")).to_contain_text('"record":true')
    page.get_by_role("button", name="Place call").click()
    page.wait_for_url(re.compile(r"/console/calls/call_\w+$"))
    call_id = page.url.rsplit("/", 1)[1]

    # The list follows the account's event stream: the row turns `completed` without a reload.
    page.get_by_role("link", name="Calls", exact=True).click()
    row = page.locator(f'tr[data-call-id="{call_id}"]')
    expect(row.get_by_test_id("call-status")).to_have_text("completed")
    with console.client() as api:
        assert api.get(f"/v1/voice/calls/{call_id}").json()["status"] == "completed"

    row.get_by_role("link", name=call_id).click()
    expect(page.get_by_role("heading", name=call_id)).to_be_visible()
    expect(page.get_by_test_id("call-status")).to_have_text("completed")
    audio = page.get_by_test_id("recording")
    expect(audio).to_have_attribute("src", re.compile(r"^blob:"))
    with console.client() as api:
        want = _transcript_lines(api, call_id)
        assert api.get(f"/v1/voice/calls/{call_id}/recording").json()["transcription"]
    expect(page.get_by_test_id("transcript").locator(".text")).to_have_text(want)
    # A transcript line seeks the recording and plays it. Watched through the element's own
    # events: a line near the end plays for a moment only, too short to catch by polling.
    audio.evaluate("el => { el.dataset.played = ''; el.addEventListener('playing', () => { el.dataset.played = 'yes'; }); }")
    page.get_by_test_id("transcript").get_by_role("button").first.click()
    page.wait_for_function("el => el.dataset.played === 'yes' && el.currentTime > 0", arg=audio.element_handle())
    expect(page.locator(".timeline")).to_contain_text("call.completed")
    page.evaluate("document.querySelector('[data-testid=recording]').pause()")
    screenshot(page, tmp_path, "console-call")


def test_build_a_two_level_menu_fix_it_save_and_simulate(page, console, tmp_path):
    from playwright.sync_api import expect

    sign_in(page, console)
    page.get_by_role("link", name="IVR builder").click()
    name = f"Menu {uuid.uuid4().hex[:6]}"
    page.get_by_label("Flow name").fill(name)
    node = lambda step: page.locator(f'.graph [data-step="{step}"]')  # noqa: E731
    panel = page.locator("form.panel")

    # The second level: a new step, not yet reachable: the API's validation marks its node.
    page.get_by_role("button", name="Add step").click()
    panel.get_by_label("Name", exact=True).fill("support")
    panel.get_by_label("Name", exact=True).press("Tab")
    expect(node("support")).to_be_visible()
    panel.get_by_label("Kind").select_option("gather")
    panel.get_by_label("Prompt").fill("Support. Press 1 to hear our hours.")
    panel.get_by_label("New branch input").fill("1")
    panel.get_by_role("button", name="Add branch").click()
    panel.get_by_label("Input “1” goes to").select_option("sales")
    expect(node("support")).to_have_class(re.compile(r"\binvalid\b"))
    expect(page.locator('[data-error-step="support"]')).to_contain_text("cannot be reached")

    # The fix: the first level's key 2 leads there.
    node("menu").click()
    panel.get_by_label("New branch input").fill("2")
    panel.get_by_role("button", name="Add branch").click()
    panel.get_by_label("Input “2” goes to").select_option("support")
    expect(page.get_by_test_id("builder-status")).to_contain_text("Valid flow.")
    expect(node("support")).not_to_have_class(re.compile(r"\binvalid\b"))

    page.get_by_role("button", name="Save", exact=True).click()
    saved = page.get_by_role("alert").filter(has_text="Saved")
    expect(saved).to_contain_text("version 1")
    flow_id = re.search(r"flow_\w+", saved.inner_text()).group(0)
    with console.client() as api:
        stored = api.get(f"/v1/voice/flows/{flow_id}").json()
        assert stored["name"] == name
        assert stored["flow"]["steps"]["menu"]["branches"] == {"1": "sales", "2": "support"}
        assert stored["flow"]["steps"]["support"]["branches"] == {"1": "sales"}
        want = api.post("/v1/voice/flows/simulate", json={"flow_id": flow_id, "inputs": [{"press": "2"}, {"press": "1"}]})
        path = want.json()["path"]
    assert path[:3] == ["menu", "support", "sales"]

    page.get_by_role("button", name="Press 2").click()
    page.get_by_role("button", name="Press 1").click()
    expect(page.get_by_test_id("sim-path")).to_have_text("Path: " + " → ".join(path))
    for a, b in zip(path, path[1:]):
        expect(page.locator(f'[data-edge="{a}>{b}"]')).to_have_class(re.compile(r"\bwalked\b"))
    for step in path:
        expect(node(step)).to_have_class(re.compile(r"\bwalked\b"))
    screenshot(page, tmp_path, "console-builder")


def test_at_phone_width_every_page_fits_and_the_menu_is_reachable_by_keyboard(console, browser, tmp_path):
    """390 px wide (a phone held upright): no page scrolls sideways, and the navigation works
    from the keyboard alone (Tab to a link, Enter follows it)."""
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    try:
        sign_in(page, console)
        nav = page.get_by_role("navigation", name="Console")
        for name in ("Calls", "Place a call", "IVR builder", "Sandbox"):
            link = nav.get_by_role("link", name=name, exact=True)
            link.focus()
            page.keyboard.press("Enter")
            expect(link).to_have_attribute("aria-current", "page")
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{name} is {overflow}px wider than the phone"
        screenshot(page, tmp_path, "console-phone-sandbox")
    finally:
        ctx.close()


def test_a_live_call_shows_its_live_transcript_and_hangs_up_from_the_page(page, console, tmp_path):
    """While the call runs (its gather waits for keys nobody presses), the call page shows
    what the callee says as the real-time worker hears it; `Hang up` ends the call."""
    from playwright.sync_api import expect

    callee = "+1555778" + str(uuid.uuid4().int % 10000).zfill(4)
    with console.client() as api:
        api.post("/v1/voice/sandbox/callees", json={
            "number": callee, "ring": 0.5, "after": 0.5,
            "say": "I would like to check the balance of my savings account please"}).raise_for_status()
        r = api.post("/v1/voice/calls", json={
            "to": callee, "from": "+15559876543", "tts": {"text": "Hello."}, "record": True, "transcribe": True,
            "gather": {"type": "dtmf", "timeout": 120}})  # the longest a gather may wait
        assert r.status_code in (200, 201), r.text
        call_id = r.json()["id"]
    sign_in(page, console)
    page.goto(f"{console.url}/console/calls/{call_id}")
    expect(page.get_by_role("heading", name=call_id)).to_be_visible()
    live = page.locator(".transcript.live")
    expect(live).to_contain_text(re.compile(r"balance|savings|account", re.I))
    page.get_by_role("button", name="Hang up").click()
    expect(page.get_by_test_id("call-status")).to_have_text("completed")
    with console.client() as api:
        call = api.get(f"/v1/voice/calls/{call_id}").json()
        assert call["status"] == "completed", call
        types = [e["type"] for e in api.get(f"/v1/voice/calls/{call_id}/events").json()["data"]]
        # The button ended it, not the gather: the hang-up comes first (the open gather is
        # closed as the call ends).
        hung = types.index("hangup.requested")
        assert all(i > hung for i, t in enumerate(types) if t in ("gather.timeout", "gather.completed")), types
    screenshot(page, tmp_path, "console-live-call")


def test_the_snippets_shown_for_a_call_place_that_call(page, console, tmp_path):
    """What the Place-a-call page shows for the form (curl, Python SDK, Node SDK) is code that
    runs: each one, run as shown with the account's key, places a call the API then has."""
    import os
    import subprocess
    import sys

    from playwright.sync_api import expect

    from tests.interop.api_stack import ROOT

    sign_in(page, console)
    page.get_by_role("link", name="Place a call").click()
    page.get_by_label("Text", exact=True).fill("It's a snippet's call.")  # a quote the shell must survive
    page.get_by_label("Record the call").check()
    snippets = {}
    for tab in ("curl", "Python", "Node"):
        page.get_by_role("tab", name=tab).click()
        panel = page.get_by_role("tabpanel")
        expect(panel).to_have_attribute("aria-label", f"{tab.lower()} snippet")  # this tab's, not the last one's
        expect(panel).to_contain_text("snippet")
        snippets[tab] = panel.inner_text()

    env = {**os.environ, "CANARY_API_KEY": console.key}
    node_dir = tmp_path / "node"
    (node_dir / "node_modules" / "@canary").mkdir(parents=True)
    (node_dir / "node_modules" / "@canary" / "node").symlink_to(ROOT / "sdk" / "node")
    (node_dir / "snippet.mjs").write_text(snippets["Node"])
    runs = {
        "curl": ["bash", "-c", snippets["curl"]],
        "Python": [sys.executable, "-c", snippets["Python"]],
        "Node": ["node", str(node_dir / "snippet.mjs")],
    }
    placed = {}
    for tab, cmd in runs.items():
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
        assert out.returncode == 0, (tab, out.stdout, out.stderr)
        placed[tab] = re.search(r"call_\w+", out.stdout).group(0)
    assert len(set(placed.values())) == 3
    with console.client() as api:
        for tab, call_id in placed.items():
            call = api.get(f"/v1/voice/calls/{call_id}").json()
            assert call["id"] == call_id and call["to"] == "+15551234567", (tab, call)
