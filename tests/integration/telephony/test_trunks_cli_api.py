"""Trunks and sandbox callees through the real CLI (subprocess) and the HTTP API (in process)
against the real Postgres: validation, scoping, and a password that never comes back."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from services.common import accounts
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

CLI = shutil.which("canary-voice") or str(Path(sys.executable).with_name("canary-voice"))
PASSWORD = "pw-" + uuid.uuid4().hex  # unique, so finding it anywhere is meaningful


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60)


@pytest.fixture
async def account(pg):
    acct = await accounts.create_account(pg, "tel-" + uuid.uuid4().hex[:10])
    yield acct
    await pg.execute("DELETE FROM sandbox_callees WHERE account_id = $1", acct["id"])
    await pg.execute("DELETE FROM accounts WHERE id = $1", acct["id"])


async def test_cli_trunk_lifecycle_never_shows_the_password(account, pg):
    name = account["name"]
    r = cli("trunks", "set", "--account", name, "--host", "SIP.Example.net", "--username", "acme",
            "--password-stdin", "--caller-id", "+1 555 000 0000", "--allow-from", "+1555", stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert "has_password:          yes" in r.stdout and PASSWORD not in r.stdout + r.stderr
    row = await pg.fetchrow("SELECT * FROM sip_trunks WHERE account_id = $1", account["id"])
    assert row["host"] == "sip.example.net" and row["caller_id"] == "+15550000000"
    assert list(row["allowed_from_prefixes"]) == ["+1555"]
    assert PASSWORD.encode() not in bytes(row["password_sealed"])  # sealed, not in clear

    r = cli("trunks", "show", "--account", name, "--json")
    assert r.returncode == 0 and PASSWORD not in r.stdout
    import orjson

    shown = orjson.loads(r.stdout)
    assert shown["has_password"] is True and "password" not in shown and shown["port"] is None  # located by DNS

    # replacing without a password keeps it (same host: a new one needs the password again,
    # tests/security/test_trunk_changes.py); --clear-password removes it
    assert cli("trunks", "set", "--account", name, "--host", "sip.example.net", "--port", "5080").returncode == 0
    from services.telephony.trunks import trunk_config

    cfg, prefixes = await trunk_config(pg, account["id"])
    assert (cfg.host, cfg.port, cfg.password, cfg.caller_id, prefixes) == ("sip.example.net", 5080, PASSWORD, None, [])
    assert PASSWORD not in repr(cfg)
    r = cli("trunks", "set", "--account", name, "--host", "pbx.example.net", "--clear-password")
    assert "has_password:          no" in r.stdout
    r = cli("trunks", "set", "--account", name, "--host", "pbx.example.net", "--transport", "tls", "--srtp", "required")
    assert r.returncode == 0 and "srtp:                  required" in r.stdout, r.stdout + r.stderr
    assert (await trunk_config(pg, account["id"]))[0].srtp == "required"

    for bad, msg in ((["--host", "bad host"], "not a hostname"), (["--host", "h", "--port", "70000"], "port"),
                     (["--host", "h", "--transport", "sctp"], "transport"),
                     (["--host", "h", "--caller-id", "12"], "caller_id"),
                     (["--host", "h", "--allow-from", "44"], "allowed_from_prefixes"),
                     (["--host", "h", "--transport", "tls", "--srtp", "maybe"], "srtp must be one of")):
        r = cli("trunks", "set", "--account", name, *bad)
        assert r.returncode == 1 and msg in r.stderr, (bad, r.stderr)
    r = cli("trunks", "set", "--account", "no-such-" + uuid.uuid4().hex[:6], "--host", "h")
    assert r.returncode == 1 and "no account named" in r.stderr

    assert cli("trunks", "delete", "--account", name).stdout.strip() == "deleted"
    r = cli("trunks", "show", "--account", name)
    assert r.returncode == 1 and "has no SIP trunk" in r.stderr
    assert cli("trunks", "delete", "--account", name).returncode == 1


async def test_cli_sandbox_callees(account, pg):
    name, number = account["name"], "+1555777" + str(uuid.uuid4().int)[:4]
    r = cli("sandbox", "callee", "add", number, "--account", name, "--ring", "500ms", "--after", "2s",
            "--press", "1234#", "--say", "yes please", "--hangup-after", "20")
    assert r.returncode == 0 and r.stdout.startswith("added"), r.stderr
    script = await pg.fetchval("SELECT script FROM sandbox_callees WHERE number = $1 AND account_id = $2",
                               number, account["id"])
    assert script == {"ring": 0.5, "answer": True, "after": 2.0, "press": "1234#", "say": "yes please",
                      "hangup_after": 20.0}
    r = cli("sandbox", "callee", "add", number, "--account", name, "--no-answer")
    assert r.stdout.startswith("replaced")
    r = cli("sandbox", "callee", "list", "--account", name)
    assert number in r.stdout and "no answer" in r.stdout and name in r.stdout

    assert "duration like" in cli("sandbox", "callee", "add", number, "--ring", "soon").stderr
    assert "magic number" in cli("sandbox", "callee", "add", "+15005550001").stderr
    assert cli("sandbox", "callee", "remove", number, "--account", name).stdout.strip() == "removed"
    r = cli("sandbox", "callee", "remove", number, "--account", name)
    assert r.returncode == 1 and "no scripted callee" in r.stderr

    r = cli("sandbox", "numbers")
    assert r.returncode == 0 and "+15005550001  busy (SIP 486)" in r.stdout and "+15005550004" in r.stdout


@pytest.fixture
async def api(stack):
    from services.api.app import create_app

    app = create_app()
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            client.app = app
            yield client


async def _key(pg, account_id: str, mode: str = "live") -> dict[str, str]:
    return {"Authorization": f"Bearer {(await accounts.create_key(pg, account_id, mode))[1]}"}


async def test_api_trunk(api, account, pg):
    h = await _key(pg, account["id"])
    r = await api.get("/v1/voice/trunk", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "trunk_not_found"
    assert (await api.get("/v1/voice/trunk")).status_code == 401

    body = {"host": "sip.example.net", "port": 5080, "username": "acme", "password": PASSWORD,
            "caller_id": "+15550000000", "allowed_from_prefixes": ["+1555"]}
    r = await api.put("/v1/voice/trunk", headers=h, json=body)
    assert r.status_code == 200, r.text
    t = r.json()
    assert PASSWORD not in r.text and "password" not in t and t["has_password"] is True
    assert (t["host"], t["port"], t["transport"], t["username"], t["caller_id"], t["allowed_from_prefixes"]) == \
        ("sip.example.net", 5080, "udp", "acme", "+15550000000", ["+1555"])
    r = await api.get("/v1/voice/trunk", headers=h)
    assert r.json() == t | {"updated_at": r.json()["updated_at"]} and PASSWORD not in r.text

    # password absent: kept (same host); null: removed
    r = await api.put("/v1/voice/trunk", headers=h, json={"host": "sip.example.net"})
    assert r.json()["has_password"] is True and r.json()["caller_id"] is None and r.json()["port"] is None
    r = await api.put("/v1/voice/trunk", headers=h, json={"host": "sip.example.net", "port": None, "transport": "tls"})
    assert (r.status_code, r.json()["port"], r.json()["transport"]) == (200, None, "tls")  # no port: DNS (RFC 3263)
    assert (await api.get("/v1/voice/trunk", headers=h)).json()["port"] is None
    r = await api.put("/v1/voice/trunk", headers=h, json={"host": "pbx.lan", "password": None})
    assert r.json()["has_password"] is False

    for bad, code, field in (({"host": "a b"}, "invalid_host", "host"), ({"port": 5060}, "missing_field", "host"),
                             ({"host": "h", "port": 0}, "invalid_port", "port"),
                             ({"host": "h", "port": 65536}, "invalid_port", "port"),
                             ({"host": "h", "port": "five"}, "invalid_port", "port"),
                             ({"host": "h", "port": True}, "invalid_port", "port"),
                             ({"host": "_sip._udp.h"}, "invalid_host", "host"),
                             ({"host": "h", "transport": "ws"}, "invalid_transport", "transport"),
                             ({"host": "h", "nope": 1}, "unknown_field", "nope"),
                             ({"host": "h", "allowed_from_prefixes": ["44"]}, "invalid_allowed_from_prefixes",
                              "allowed_from_prefixes"),
                             ({"host": "h", "password": 5}, "invalid_password", "password")):
        r = await api.put("/v1/voice/trunk", headers=h, json=bad)
        assert r.status_code == 422 and r.json() == {"error": {"code": code, "message": r.json()["error"]["message"],
                                                               "field": field}}, (bad, r.text)
    r = await api.put("/v1/voice/trunk", headers={**h, "Content-Type": "application/json"}, content=b"{")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"

    # another account sees nothing of it
    other = await accounts.create_account(pg, "tel-" + uuid.uuid4().hex[:10])
    try:
        r = await api.get("/v1/voice/trunk", headers=await _key(pg, other["id"], "test"))
        assert r.status_code == 404
    finally:
        await pg.execute("DELETE FROM accounts WHERE id = $1", other["id"])

    assert (await api.delete("/v1/voice/trunk", headers=h)).status_code == 204
    r = await api.delete("/v1/voice/trunk", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "trunk_not_found"


async def test_api_sandbox_callees(api, account, pg):
    h = await _key(pg, account["id"], "test")
    number = "+1555777" + str(uuid.uuid4().int)[:4]
    assert (await api.get("/v1/voice/sandbox/callees", headers=h)).json() == {"object": "list", "data": []}
    r = await api.post("/v1/voice/sandbox/callees", headers=h,
                       json={"number": number, "ring": "500ms", "after": 2, "press": "1234#", "say": "yes please"})
    assert r.status_code == 201, r.text
    c = r.json()
    assert (c["number"], c["ring"], c["after"], c["press"], c["answer"], c["hangup_after"]) == \
        (number, 0.5, 2.0, "1234#", True, None)
    r = await api.post("/v1/voice/sandbox/callees", headers=h, json={"number": number, "answer": False})
    assert r.status_code == 200 and r.json()["answer"] is False
    # the gateway's lookup finds it for this account only
    assert await pg.fetchval("SELECT script->>'answer' FROM sandbox_callees WHERE number = $1 AND account_id = $2",
                             number, account["id"]) == "false"
    data = (await api.get("/v1/voice/sandbox/callees", headers=h)).json()["data"]
    assert [d["number"] for d in data] == [number]

    other = await accounts.create_account(pg, "tel-" + uuid.uuid4().hex[:10])
    try:
        ho = await _key(pg, other["id"], "test")
        assert (await api.get("/v1/voice/sandbox/callees", headers=ho)).json()["data"] == []
        assert (await api.delete(f"/v1/voice/sandbox/callees/{number}", headers=ho)).status_code == 404
    finally:
        await pg.execute("DELETE FROM accounts WHERE id = $1", other["id"])

    for bad, code, field in (({"number": "+15005550002"}, "magic_number", "number"),
                             ({"number": "12"}, "invalid_phone_number", "number"),
                             ({"ring": 1}, "missing_field", "number"),
                             ({"number": number, "press": "x"}, "invalid_press", "press"),
                             ({"number": number, "hangup_after": "later"}, "invalid_hangup_after", "hangup_after"),
                             ({"number": number, "extra": 1}, "unknown_field", "extra")):
        r = await api.post("/v1/voice/sandbox/callees", headers=h, json=bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == code and r.json()["error"]["field"] == field, \
            (bad, r.text)

    assert (await api.delete(f"/v1/voice/sandbox/callees/{number}", headers=h)).status_code == 204
    r = await api.delete(f"/v1/voice/sandbox/callees/{number}", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "callee_not_found"


async def test_openapi_documents_the_routes(api):
    doc = (await api.get("/openapi.json")).json()
    assert {"get", "put", "delete"} <= set(doc["paths"]["/v1/voice/trunk"])
    assert doc["paths"]["/v1/voice/trunk"]["put"]["requestBody"]["content"]["application/json"]["schema"][
        "properties"]["password"]["writeOnly"] is True
    assert {"get", "post"} <= set(doc["paths"]["/v1/voice/sandbox/callees"])
