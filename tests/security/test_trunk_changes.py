"""The SIP trunk is where an account's live calls, and the digest answer to the trunk's
password, go. So: only a live key may change it; a new host needs the password again
(a stored password is never sent to a host it was not given for); and its host obeys
the SSRF rules of customer URLs, when it is set (API and CLI) and when a call dials.
`CANARY_ALLOW_PRIVATE_URLS=1` stays the development override."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from services.lib import trunks
from services.lib.trunks import TrunkError
from services.telephony.carrier import DialRequest
from services.telephony.trunks import prepare_dial
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

PASSWORD = "pw-" + uuid.uuid4().hex
TRUNK = {"host": "sip.example.net", "port": 5060, "username": "acme", "password": PASSWORD}
PRIVATE_HOSTS = ("127.0.0.1", "localhost", "LocalHost.", "pbx.localhost", "169.254.169.254", "10.0.0.9",
                 "192.168.1.1", "100.64.0.1", "0.0.0.0", "::1", "[::1]", "::ffff:127.0.0.1", "fe80::1",
                 "0x7f.0.0.1", "0x7f000001", "224.0.0.1")


@pytest.fixture(autouse=True)
def production(monkeypatch):
    """The guard on, as in production (the override is tested where it is set)."""
    monkeypatch.delenv("CANARY_ALLOW_PRIVATE_URLS", raising=False)


def err(r, status: int, code: str, field: str | None) -> None:
    assert r.status_code == status, r.text
    assert r.json() == {"error": {"code": code, "message": r.json()["error"]["message"], "field": field}}, r.text


async def stored(pg, account_id: str):
    return await pg.fetchrow("SELECT host, port, password_sealed FROM sip_trunks WHERE account_id = $1", account_id)


async def test_a_sandbox_key_cannot_change_or_remove_the_trunk(api, acct, pg):
    assert (await api.put("/v1/voice/trunk", headers=acct.live, json=TRUNK)).status_code == 200
    before = await stored(pg, acct.id)

    r = await api.put("/v1/voice/trunk", headers=acct.test, json={**TRUNK, "host": "evil.example.org"})
    err(r, 403, "live_key_required", None)
    r = await api.put("/v1/voice/trunk", headers=acct.test, json={"host": "evil.example.org", "password": "x"})
    err(r, 403, "live_key_required", None)
    err(await api.delete("/v1/voice/trunk", headers=acct.test), 403, "live_key_required", None)
    assert await stored(pg, acct.id) == before

    # reading stays open to both modes (the password never comes back)
    r = await api.get("/v1/voice/trunk", headers=acct.test)
    assert r.status_code == 200 and r.json()["host"] == "sip.example.net" and PASSWORD not in r.text
    assert (await api.delete("/v1/voice/trunk", headers=acct.live)).status_code == 204


async def test_a_new_host_needs_the_password_again(api, acct, pg):
    assert (await api.put("/v1/voice/trunk", headers=acct.live, json=TRUNK)).status_code == 200
    before = await stored(pg, acct.id)

    r = await api.put("/v1/voice/trunk", headers=acct.live, json={"host": "collector.example.org"})
    err(r, 422, "password_required", "password")
    r = await api.put("/v1/voice/trunk", headers=acct.live, json={"host": "SIP2.example.net", "username": "acme"})
    err(r, 422, "password_required", "password")
    assert await stored(pg, acct.id) == before  # nothing changed, the password stayed with its host

    # same host (any spelling): the stored password is kept, other fields change
    r = await api.put("/v1/voice/trunk", headers=acct.live, json={"host": "SIP.Example.NET.", "port": 5080})
    assert r.status_code == 200 and r.json()["has_password"] is True and r.json()["port"] == 5080
    # a new host with its password, or with the password removed, is fine
    r = await api.put("/v1/voice/trunk", headers=acct.live, json={"host": "sip2.example.net", "password": "new"})
    assert r.status_code == 200 and r.json()["host"] == "sip2.example.net" and r.json()["has_password"] is True
    r = await api.put("/v1/voice/trunk", headers=acct.live, json={"host": "sip3.example.net", "password": None})
    assert r.status_code == 200 and r.json()["has_password"] is False
    # no stored password: nothing to protect, the host may change without one
    r = await api.put("/v1/voice/trunk", headers=acct.live, json={"host": "sip4.example.net"})
    assert r.status_code == 200 and r.json()["has_password"] is False


async def test_private_trunk_hosts_are_refused(api, acct, pg, monkeypatch):
    for host in PRIVATE_HOSTS:
        r = await api.put("/v1/voice/trunk", headers=acct.live, json={**TRUNK, "host": host})
        err(r, 422, "host_not_allowed", "host")
    assert await stored(pg, acct.id) is None
    with pytest.raises(TrunkError) as info:
        await trunks.set_trunk(pg, acct.id, host="169.254.169.254")
    assert info.value.code == "host_not_allowed"
    for host in ("sip.example.net", "8.8.8.8", "2001:4860:4860::8888"):
        r = await api.put("/v1/voice/trunk", headers=acct.live, json={**TRUNK, "host": host})
        assert r.status_code == 200, (host, r.text)

    # the development override (what `make run` sets) still allows a local trunk
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")
    r = await api.put("/v1/voice/trunk", headers=acct.live, json={**TRUNK, "host": "127.0.0.1", "port": 5070})
    assert r.status_code == 200 and r.json()["host"] == "127.0.0.1"


class OneTrunk:
    """fetchrow for trunk_config: the stored row of a trunk with ``host``."""

    def __init__(self, host: str):
        self.row = {"host": host, "port": 5060, "transport": "udp", "username": "acme",
                    "password_sealed": trunks.seal(PASSWORD), "caller_id": None, "allowed_from_prefixes": []}

    async def fetchrow(self, sql, *args):
        return self.row


async def test_dialing_resolves_the_host_under_the_same_rules(monkeypatch):
    """A name is judged on what it resolves to when a call dials (it may have changed since the
    trunk was set), and the SIP goes to the address that was vetted."""
    req = DialRequest("call_1", "+15551234567", "+15559876543", account_id="acct_1")
    for host in ("localhost", "127.0.0.1", "169.254.169.254"):
        with pytest.raises(TrunkError) as info:
            await prepare_dial(OneTrunk(host), req)
        assert info.value.code == "host_not_allowed" and PASSWORD not in str(info.value)
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")
    out = await prepare_dial(OneTrunk("localhost"), req)
    assert out.trunk.host == "localhost" and out.trunk.address == "127.0.0.1" and out.trunk.password == PASSWORD


CLI = shutil.which("canary-voice") or str(Path(sys.executable).with_name("canary-voice"))


def cli(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    import os

    environ = {k: v for k, v in os.environ.items() if k != "CANARY_ALLOW_PRIVATE_URLS"} | env
    return subprocess.run([CLI, *args], cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60,
                          env=environ)


async def test_the_cli_follows_the_same_rules(acct, pg):
    name = acct.name
    for host in ("127.0.0.1", "localhost", "169.254.169.254"):
        r = cli("trunks", "set", "--account", name, "--host", host)
        assert r.returncode == 1 and "host" in r.stderr, (host, r.stdout, r.stderr)
    assert await stored(pg, acct.id) is None

    r = cli("trunks", "set", "--account", name, "--host", "sip.example.net", "--password-stdin", stdin=PASSWORD)
    assert r.returncode == 0, r.stderr
    r = cli("trunks", "set", "--account", name, "--host", "collector.example.org")
    assert r.returncode == 1 and "password" in r.stderr, r.stderr
    assert (await stored(pg, acct.id))["host"] == "sip.example.net"
    r = cli("trunks", "set", "--account", name, "--host", "sip.example.net", "--port", "5080")
    assert r.returncode == 0 and "has_password:          yes" in r.stdout, r.stderr
    r = cli("trunks", "set", "--account", name, "--host", "sip2.example.net", "--password-stdin", stdin="other")
    assert r.returncode == 0 and "sip2.example.net" in r.stdout, r.stderr

    r = cli("trunks", "set", "--account", name, "--host", "127.0.0.1", "--clear-password",
            CANARY_ALLOW_PRIVATE_URLS="1")
    assert r.returncode == 0 and "127.0.0.1" in r.stdout, r.stderr
