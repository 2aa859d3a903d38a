"""/v1/voice/flows against real Postgres: versioning, 422 naming the step, per-account isolation."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from services.api.routers.flows import router
from services.lib.flows import store
from tests.conftest import router_client

pytestmark = pytest.mark.integration

EX = Path(__file__).resolve().parents[3] / "schemas" / "flows" / "examples"


def load(name: str) -> dict:
    return json.loads((EX / name).read_text())


@pytest.fixture
async def accounts(pg):
    ids = [f"acct_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    for a in ids:
        await pg.execute("INSERT INTO accounts (id, name, signing_secret) VALUES ($1, $1, 'x')", a)
    yield ids
    await pg.execute("DELETE FROM accounts WHERE id = ANY($1::text[])", ids)


def client(account_id: str, pool) -> httpx.AsyncClient:
    return router_client(router, account_id, pool)


async def test_create_get_put_versions_delete(accounts, pool, pg):
    a, b = accounts
    async with client(a, pool) as c:
        r = await c.post("/v1/voice/flows", content=json.dumps(load("main_menu.json")))
        assert r.status_code == 201, r.text
        flow = r.json()
        fid = flow["id"]
        assert fid.startswith("flow_") and flow["version"] == 1 and flow["name"] == "Acme main menu"
        assert r.headers["location"] == f"/v1/voice/flows/{fid}"
        assert flow["flow"] == load("main_menu.json")

        v2 = load("main_menu.json")
        v2["name"] = "Acme menu v2"
        v2["steps"]["welcome"]["text"] = "Welcome to Acme."
        r = await c.put(f"/v1/voice/flows/{fid}", content=json.dumps(v2))
        assert r.status_code == 200 and r.json()["version"] == 2

        latest = (await c.get(f"/v1/voice/flows/{fid}")).json()
        assert latest["version"] == 2 and latest["flow"]["steps"]["welcome"]["text"] == "Welcome to Acme."
        old = (await c.get(f"/v1/voice/flows/{fid}", params={"version": 1})).json()
        assert old["version"] == 1 and old["latest_version"] == 2 and old["name"] == "Acme menu v2"
        assert old["flow"]["steps"]["welcome"]["text"] == "Thanks for calling Acme."
        assert (await c.get(f"/v1/voice/flows/{fid}", params={"version": 3})).status_code == 404
        assert [v["version"] for v in (await c.get(f"/v1/voice/flows/{fid}/versions")).json()["data"]] == [1, 2]
        assert fid in [f["id"] for f in (await c.get("/v1/voice/flows")).json()["data"]]

    async with client(b, pool) as other:  # another account sees nothing
        assert (await other.get(f"/v1/voice/flows/{fid}")).status_code == 404
        assert (await other.put(f"/v1/voice/flows/{fid}", content=json.dumps(v2))).status_code == 404
        assert (await other.delete(f"/v1/voice/flows/{fid}")).status_code == 404
        assert (await other.get("/v1/voice/flows")).json()["data"] == []

    # the orchestrator's loader
    assert await store.load_definition(pg, a, fid) == (2, v2)
    async with client(a, pool) as c:
        assert (await c.delete(f"/v1/voice/flows/{fid}")).status_code == 204
        assert (await c.get(f"/v1/voice/flows/{fid}")).status_code == 404
        assert (await c.delete(f"/v1/voice/flows/{fid}")).status_code == 404
    assert await store.load_definition(pg, a, fid) is None  # no new calls on a deleted flow
    assert (await store.load_definition(pg, a, fid, version=1))[0] == 1  # replay still resolves


@pytest.mark.parametrize("name,field,code", [
    ("bad_unknown_kind.json", "steps.b", "unknown_step_kind"),
    ("bad_missing_target.json", "steps.menu", "missing_target"),
    ("bad_unreachable.json", "steps.orphan", "unreachable"),
    ("bad_loop_without_gather.json", "steps.again", "loop_without_gather"),
])
async def test_invalid_flow_is_422_naming_the_step(accounts, pool, name, field, code):
    async with client(accounts[0], pool) as c:
        r = await c.post("/v1/voice/flows", content=json.dumps(load(name)))
        assert r.status_code == 422
        err = r.json()["error"]
        assert err["code"] == "invalid_flow" and err["message"].startswith(field) and err["field"] == field
        assert (field, code) in [(e["field"], e["code"]) for e in err["errors"]]
        # a PUT of a broken version is refused too, and the stored one is unchanged
        fid = (await c.post("/v1/voice/flows", content=json.dumps(load("pin_entry.json")))).json()["id"]
        assert (await c.put(f"/v1/voice/flows/{fid}", content=json.dumps(load(name)))).status_code == 422
        assert (await c.get(f"/v1/voice/flows/{fid}")).json()["version"] == 1


async def test_malformed_json_is_400(accounts, pool):
    async with client(accounts[0], pool) as c:
        r = await c.post("/v1/voice/flows", content=b"{nope")
        assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"


async def test_wired_into_the_real_api_app_with_api_key_auth(pg, stack):
    """The API app includes the flows and webhooks routers, with API-key auth."""
    from services.api.app import create_app
    from services.common.accounts import create_account, create_key

    acct = await create_account(pg, f"flows_{uuid.uuid4().hex[:10]}")
    try:
        _, key = await create_key(pg, acct["id"], "test")
        app = create_app()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            assert (await c.get("/v1/voice/flows")).status_code == 401
            auth = {"Authorization": f"Bearer {key}"}
            r = await c.post("/v1/voice/flows", content=json.dumps(load("pin_entry.json")), headers=auth)
            assert r.status_code == 201, r.text
            r = await c.post("/v1/voice/flows", content=json.dumps(load("bad_unreachable.json")), headers=auth)
            assert r.status_code == 422 and r.json()["error"]["field"] == "steps.orphan"
            r = await c.get("/v1/voice/calls/call_unknown/webhooks", headers=auth)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        rt = app.state.runtime
        if rt.pool is not None:
            await rt.pool.close()
    finally:
        await pg.execute("DELETE FROM accounts WHERE id = $1", acct["id"])


def dial_flow(**step) -> dict:
    return {"start": "agent", "steps": {"agent": {"kind": "dial", "to": "+15557770010", **step, "next": "bye"},
                                        "bye": {"kind": "hangup"}}}


@pytest.mark.parametrize("step,path", [
    ({"to": "5551234"}, "steps.agent.to"),  # neither E.164 nor a SIP URI
    ({"to": "+15551"}, "steps.agent.to"),  # E.164's shape, not a possible number
    ({"timeout": 0}, "steps.agent.timeout"),
    ({"timeout": 9999}, "steps.agent.timeout"),
    ({"caller_id": "alice"}, "steps.agent.caller_id"),
])
async def test_a_bad_dial_step_is_refused_naming_its_field(accounts, pool, step, path):
    async with client(accounts[0], pool) as c:
        r = await c.post("/v1/voice/flows", content=json.dumps(dial_flow(**step)))
        assert r.status_code == 422
        err = r.json()["error"]
        assert (err["code"], err["field"]) == ("invalid_flow", "steps.agent")
        assert [(e["code"], e["path"]) for e in err["errors"]] == [("invalid_step", path)]
        # The editor's check answers the same errors as data.
        r = await c.post("/v1/voice/flows/validate", content=json.dumps(dial_flow(**step)))
        assert r.status_code == 200 and r.json()["valid"] is False
        assert [(e["code"], e["field"], e["path"]) for e in r.json()["errors"]] == [
            ("invalid_step", "steps.agent", path)]
        ok = await c.post("/v1/voice/flows/validate", content=json.dumps(dial_flow(to="sip:alice@pbx.example.com")))
        assert ok.json() == {"valid": True, "errors": []}
        # The simulator takes dial outcomes.
        r = await c.post("/v1/voice/flows/simulate", content=json.dumps(
            {"flow": dial_flow(branches={"busy": "bye"}), "inputs": [{"dial": "busy"}]}))
        assert r.status_code == 200 and r.json()["path"] == ["agent", "bye"]
        r = await c.post("/v1/voice/flows/simulate", content=json.dumps(
            {"flow": dial_flow(), "inputs": [{"dial": "answered"}]}))
        assert (r.status_code, r.json()["error"]["field"]) == (422, "inputs.0")


async def test_a_transfer_step_is_validated_and_simulated(accounts, pool):
    flow = {"start": "agent", "steps": {"agent": {"kind": "transfer", "to": "tel:+15557770010", "on_failed": "bye"},
                                        "bye": {"kind": "hangup"}}}
    async with client(accounts[0], pool) as c:
        ok = await c.post("/v1/voice/flows/validate", content=json.dumps(flow))
        assert ok.json() == {"valid": True, "errors": []}
        bad = {"start": "agent", "steps": {"agent": {"kind": "transfer", "to": "5557770010"}}}
        r = await c.post("/v1/voice/flows", content=json.dumps(bad))
        assert r.status_code == 422 and [e["path"] for e in r.json()["error"]["errors"]] == ["steps.agent.to"]
        r = await c.post("/v1/voice/flows/simulate", content=json.dumps({"flow": flow, "inputs": [{"transfer": "failed"}]}))
        assert r.status_code == 200 and r.json()["path"] == ["agent", "bye"]
        r = await c.post("/v1/voice/flows/simulate", content=json.dumps({"flow": flow}))
        assert r.status_code == 200 and (r.json()["path"], r.json()["ended"]) == (["agent"], "transferred")
        r = await c.post("/v1/voice/flows/simulate", content=json.dumps({"flow": flow, "inputs": [{"transfer": "busy"}]}))
        assert (r.status_code, r.json()["error"]["field"]) == (422, "inputs.0")
