"""services.common.signing: the Canary-Signature scheme."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from services.common import signing

BODY = b'{"call_id":"call_abc123xyz","type":"gather.completed","digits":"1234","finished_on_key":"#"}'


def test_header_format_and_known_vector():
    h = signing.sign("whsec_test", BODY, timestamp=1700000000)
    expected = hmac.new(b"whsec_test", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert h == f"t=1700000000,v1={expected}"


def test_verify_roundtrip():
    h = signing.sign("s3cret", BODY, timestamp=1000)
    signing.verify("s3cret", BODY, h, now=1000 + 299)
    assert signing.is_valid("s3cret", BODY, h, now=1000)


@pytest.mark.parametrize("secret,body", [("other", BODY), ("s3cret", BODY + b" ")])
def test_wrong_secret_or_tampered_body_fails(secret, body):
    h = signing.sign("s3cret", BODY, timestamp=1000)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(secret, body, h, now=1000)


def test_stale_and_future_timestamps_fail_but_tolerance_none_skips():
    h = signing.sign("s3cret", BODY, timestamp=1000)
    with pytest.raises(signing.SignatureError, match="tolerance"):
        signing.verify("s3cret", BODY, h, now=1000 + 301)
    with pytest.raises(signing.SignatureError, match="tolerance"):
        signing.verify("s3cret", BODY, h, now=1000 - 301)
    signing.verify("s3cret", BODY, h, now=10**9, tolerance=None)


def test_changing_the_timestamp_breaks_the_signature():
    h = signing.sign("s3cret", BODY, timestamp=1000)
    forged = h.replace("t=1000", "t=2000")
    assert not signing.is_valid("s3cret", BODY, forged, now=2000)


def test_several_v1_entries_allow_rotation():
    old = signing.compute("old", BODY, 1000)
    new = signing.compute("new", BODY, 1000)
    header = f"t=1000,v1={old},v1={new}"
    assert signing.is_valid("old", BODY, header, now=1000)
    assert signing.is_valid("new", BODY, header, now=1000)


@pytest.mark.parametrize("header", ["", "v1=abc", "t=1000", "t=abc,v1=00", "garbage"])
def test_malformed_headers(header):
    with pytest.raises(signing.SignatureError):
        signing.verify("s", BODY, header, now=1000)
