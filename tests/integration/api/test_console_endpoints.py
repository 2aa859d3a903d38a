"""What the console needs of the API: flow validation and simulation as data, API keys
managed with a key, and the console's static build served at /console."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


pytestmark = pytest.mark.integration

EX = Path(__file__).resolve().parents[3] / "schemas" / "flows" / "examples"
MENU = json.loads((EX / "main_menu.json").read_text())


async def test_validate_answers_every_error_as_data(client, acct):
    bad = json.loads((EX / "bad_missing_target.json").read_text())
    r = await client.post("/v1/voice/flows/validate", json=bad, headers=acct.headers)
    assert r.status_code == 200 and r.json()["valid"] is False
    assert any(e["code"] == "missing_target" and e["field"].startswith("steps.") for e in r.json()["errors"])
    r = await client.post("/v1/voice/flows/validate", json=MENU, headers=acct.headers)
    assert r.json() == {"valid": True, "errors": []}


async def test_simulate_inline_and_stored(client, acct):
    from services.lib.flows.simulate import simulate

    want = simulate(MENU, [("press", "2"), ("press", "1")]).to_dict()
    r = await client.post("/v1/voice/flows/simulate", headers=acct.headers,
                          json={"flow": MENU, "inputs": [{"press": "2"}, {"press": "1"}]})
    assert r.status_code == 200 and r.json() == want
    created = (await client.post("/v1/voice/flows", json=MENU, headers=acct.headers)).json()
    r = await client.post("/v1/voice/flows/simulate", headers=acct.headers,
                          json={"flow_id": created["id"], "version": 1, "inputs": [{"press": "2"}, {"press": "1"}]})
    assert r.json()["path"] == want["path"]
    r = await client.post("/v1/voice/flows/simulate", headers=acct.headers,
                          json={"flow": {"start": "x", "steps": {"a": {"kind": "hangup"}}}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_flow"
    r = await client.post("/v1/voice/flows/simulate", headers=acct.headers, json={"flow": MENU, "inputs": ["2"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "inputs.0"


async def test_simulate_is_per_account(client, acct, other):
    created = (await client.post("/v1/voice/flows", json=MENU, headers=acct.headers)).json()
    r = await client.post("/v1/voice/flows/simulate", headers=other.headers, json={"flow_id": created["id"]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "flow_not_found"


async def test_keys_create_list_revoke(client, acct, other):
    r = await client.post("/v1/voice/keys", json={"mode": "test"}, headers=acct.headers)
    assert r.status_code == 201
    new = r.json()
    assert new["key"].startswith("sk_test_") and new["prefix"] == new["key"][:12]
    listed = (await client.get("/v1/voice/keys", headers=acct.headers)).json()["data"]
    assert new["id"] in {k["id"] for k in listed} and all("key" not in k for k in listed)
    assert sum(k["current"] for k in listed) == 1
    new_headers = {"Authorization": f"Bearer {new['key']}"}
    assert (await client.get("/v1/voice/calls", headers=new_headers)).status_code == 200
    # Another account's key cannot touch it; this request's own key cannot revoke itself.
    assert (await client.delete(f"/v1/voice/keys/{new['id']}", headers=other.headers)).status_code == 404
    assert (await client.delete(f"/v1/voice/keys/{new['id']}", headers=new_headers)).status_code == 409
    assert (await client.delete(f"/v1/voice/keys/{new['id']}", headers=acct.headers)).status_code == 204
    assert (await client.get("/v1/voice/calls", headers=new_headers)).status_code == 401
    assert (await client.delete(f"/v1/voice/keys/{new['id']}", headers=acct.headers)).status_code == 404


async def test_a_sandbox_key_makes_no_live_key(client, acct):
    r = await client.post("/v1/voice/keys", json={"mode": "live"}, headers=acct.headers)
    assert r.status_code == 403
    live = {"Authorization": f"Bearer {acct.live_key}"}
    assert (await client.post("/v1/voice/keys", json={"mode": "live"}, headers=live)).json()["mode"] == "live"


async def test_console_served_with_spa_fallback(client, tmp_path, app):
    from services.api import console

    r = await client.get("/console/")
    assert r.status_code in (200, 503)  # depends on whether this checkout built the console
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>console</title>")
    (dist / "assets" / "app-abc.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("no")
    app.router.routes[:] = [rt for rt in app.router.routes if not getattr(rt, "path", "").startswith("/console")]
    console.install(app, dist)
    r = await client.get("/console/calls/call_123")
    assert r.status_code == 200 and "<title>console</title>" in r.text and "Content-Security-Policy" in r.headers
    r = await client.get("/console/assets/app-abc.js")
    assert r.text == "console.log(1)" and "immutable" in r.headers["cache-control"]
    assert (await client.get("/console/assets/missing.js")).status_code == 404
    assert "secret" not in (await client.get("/console/..%2fsecret.txt")).text
    assert (await client.get("/console", follow_redirects=False)).headers["location"] == "/console/"


async def test_console_says_how_to_build_it(client, tmp_path, app):
    from services.api import console

    app.router.routes[:] = [rt for rt in app.router.routes if not getattr(rt, "path", "").startswith("/console")]
    console.install(app, tmp_path / "nothing")
    r = await client.get("/console/")
    assert r.status_code == 503 and "make install" in r.text
