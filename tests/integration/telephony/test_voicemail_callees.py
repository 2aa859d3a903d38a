"""Voicemail and person sandbox callees through the real CLI and the HTTP API, on the real Postgres."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.telephony.test_trunks_cli_api import _key, account, api, cli  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

GREETING = "Hi, this is Dana. Leave a message after the tone."


async def test_cli_voicemail_callee(account, pg):  # noqa: F811
    name, number = account["name"], "+1555778" + str(uuid.uuid4().int)[:4]
    r = cli("sandbox", "callee", "add", number, "--account", name, "--voicemail", GREETING, "--beep")
    assert r.returncode == 0 and r.stdout.startswith("added"), r.stderr
    script = await pg.fetchval("SELECT script FROM sandbox_callees WHERE number = $1 AND account_id = $2",
                               number, account["id"])
    assert script["voicemail"] == GREETING and script["beep"] is True and script["say"] == ""
    assert f"voicemail {GREETING!r} + beep" in cli("sandbox", "callee", "list", "--account", name).stdout
    # A beep without a greeting, and a greeting with a line to say, are refused with the reason.
    r = cli("sandbox", "callee", "add", number, "--account", name, "--beep")
    assert r.returncode != 0 and "only a voicemail" in r.stderr
    r = cli("sandbox", "callee", "add", number, "--account", name, "--voicemail", GREETING, "--say", "Hello?")
    assert r.returncode != 0 and "not both" in r.stderr


async def test_api_voicemail_and_person_callees(api, account, pg):  # noqa: F811
    h = await _key(pg, account["id"], "test")
    vm, person = ("+1555778" + str(uuid.uuid4().int)[:4], "+1555779" + str(uuid.uuid4().int)[:4])
    r = await api.post("/v1/voice/sandbox/callees", headers=h, json={"number": vm, "voicemail": GREETING, "beep": True})
    assert r.status_code == 201, r.text
    assert (r.json()["voicemail"], r.json()["beep"], r.json()["say"]) == (GREETING, True, "")
    r = await api.post("/v1/voice/sandbox/callees", headers=h, json={"number": person, "after": "300ms",
                                                                     "say": "Hello?"})
    assert r.status_code == 201 and (r.json()["voicemail"], r.json()["beep"]) == ("", False)
    for bad, code in (({"number": vm, "beep": True}, "invalid_beep"),
                      ({"number": vm, "voicemail": GREETING, "beep": "yes"}, "invalid_beep"),
                      ({"number": vm, "voicemail": "x" * 1001}, "invalid_voicemail"),
                      ({"number": vm, "voicemail": GREETING, "say": "Hello?"}, "invalid_voicemail")):
        r = await api.post("/v1/voice/sandbox/callees", headers=h, json=bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == code, (bad, r.text)
    # the refused updates left the voicemail as it was
    assert (await pg.fetchval("SELECT script->>'beep' FROM sandbox_callees WHERE number = $1 AND account_id = $2",
                              vm, account["id"])) == "true"
