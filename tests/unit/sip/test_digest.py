import hashlib

import pytest

from services.telephony.sip.digest import Challenge, DigestError, authorization, digest_response, parse_challenge


def test_rfc2617_vector_qop_auth():
    ch = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert ch.qop == ("auth", "auth-int") and ch.opaque == "5ccc069c403ebaf9f0171e9517f40e41"
    resp = digest_response(ch, method="GET", uri="/dir/index.html", username="Mufasa",
                           password="Circle Of Life", cnonce="0a4f113b", nc=1)
    assert resp == "6629fae49393a05397450978507c4ef1"


def test_no_qop_and_header():
    ch = Challenge(realm="r", nonce="n")
    ha1 = hashlib.md5(b"u:r:p").hexdigest()
    ha2 = hashlib.md5(b"INVITE:sip:x@h").hexdigest()
    expect = hashlib.md5(f"{ha1}:n:{ha2}".encode()).hexdigest()
    assert digest_response(ch, method="INVITE", uri="sip:x@h", username="u", password="p", cnonce="c", nc=1) == expect
    hdr = authorization(ch, method="INVITE", uri="sip:x@h", username="u", password="p")
    assert f'response="{expect}"' in hdr and "qop" not in hdr and 'password' not in hdr


def test_qop_header_fields_and_stale():
    ch = parse_challenge('Digest realm="r", nonce="n", qop=auth, algorithm=MD5, stale=TRUE')
    assert ch.stale
    hdr = authorization(ch, method="BYE", uri="sip:x@h", username="u", password="p", nc=2, cnonce="abc")
    assert "qop=auth" in hdr and "nc=00000002" in hdr and 'cnonce="abc"' in hdr


def test_unsupported():
    with pytest.raises(DigestError):
        parse_challenge('Basic realm="x"')
    with pytest.raises(DigestError):
        digest_response(Challenge("r", "n", qop=("auth-int",)), method="A", uri="u", username="u",
                        password="p", cnonce="c", nc=1)
