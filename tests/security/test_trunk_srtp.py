"""A trunk's `srtp` through the API: validated (code and field), refused outside development on a
trunk whose SIP is not TLS (SDES keys cross in the SDP: over udp or tcp anyone reading the SIP
has them), stored, and used by the gateway for outbound dials and incoming INVITEs alike."""

from __future__ import annotations

import pytest

from services.common import accounts, db
from services.lib import trunks
from services.lib.inbound import Accept
from services.telephony.inbound import DirectoryCache
from services.telephony.trunks import trunk_config

pytestmark = pytest.mark.integration

TLS = {"host": "198.51.100.78", "transport": "tls"}


@pytest.fixture(autouse=True)
def documentation_hosts(monkeypatch):
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")


async def test_srtp_is_off_unless_set_and_reaches_dials_and_incoming_routing(api, acct, pg):
    r = await api.put("/v1/voice/trunk", headers=acct.live, json=TLS)
    assert r.status_code == 200 and r.json()["srtp"] == "off", r.text
    r = await api.put("/v1/voice/trunk", headers=acct.live, json={**TLS, "srtp": "required"})
    assert r.status_code == 200 and r.json()["srtp"] == "required", r.text
    assert (await api.get("/v1/voice/trunk", headers=acct.live)).json()["srtp"] == "required"
    trunk, _ = await trunk_config(pg, acct.id)
    assert (trunk.transport, trunk.srtp) == ("tls", "required")

    pool = await db.create_pool(min_size=1, max_size=1)
    try:
        await accounts.add_number(pool, acct.id, "+15557770002")
        from services.lib import inbound
        await inbound.set_route(pool, acct.id, "+15557770002", inbound.check_changes({"flow_id": None,
                                                                                    "voice_url": "https://a.example/"}))
        found = await DirectoryCache(pool).route("198.51.100.78", "+15557770002")
        assert isinstance(found, Accept) and found.srtp == "required"
    finally:
        await pool.close()


@pytest.mark.parametrize("value", ["on", "", None, 1, True, "SRTP"])
async def test_a_bad_srtp_value_is_422_with_code_and_field(api, acct, value):
    r = await api.put("/v1/voice/trunk", headers=acct.live, json={**TLS, "srtp": value})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert (err["code"], err["field"]) == ("invalid_srtp", "srtp"), r.text


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("mode", ["optional", "required"])
async def test_srtp_over_clear_text_signalling_is_refused_outside_development(api, acct, monkeypatch, transport, mode):
    monkeypatch.setenv("CANARY_ENV", "production")
    r = await api.put("/v1/voice/trunk", headers=acct.live, json={**TLS, "transport": transport, "srtp": mode})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert (err["code"], err["field"]) == ("srtp_requires_tls", "srtp"), r.text


def test_the_rule_itself(monkeypatch):
    monkeypatch.setenv("CANARY_ENV", "production")
    assert trunks.valid_srtp("Required", "tls") == "required"
    assert trunks.valid_srtp("off", "udp") == "off"
    with pytest.raises(trunks.TrunkError) as exc:
        trunks.valid_srtp("optional", "udp")
    assert (exc.value.code, exc.value.field) == ("srtp_requires_tls", "srtp")
    monkeypatch.setenv("CANARY_ENV", "development")  # tests of inbound SRTP over udp
    assert trunks.valid_srtp("required", "udp") == "required"
