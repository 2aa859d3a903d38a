import pytest

from services.telephony.sip.message import (
    SipMessage,
    SipParseError,
    parse_message,
    parse_name_addr,
    parse_via,
    split_commas,
)

INVITE_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport=5060, SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKdef\r\n"
    b'f: "Alice" <sip:+1555@trunk>;tag=aaa\r\n'
    b"t: <sip:+1666@trunk>;tag=bbb\r\n"
    b"i: abc@10.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:callee@10.0.0.9:5070>\r\n"
    b"Subject: folded\r\n second line\r\n"
    b"c: application/sdp\r\n"
    b"l: 4\r\n"
    b"\r\n"
    b"v=0\r\nextra-bytes-ignored"
)


def test_parse_response_compact_and_folding():
    m = parse_message(INVITE_200)
    assert m.status == 200 and m.reason == "OK" and not m.is_request
    assert m.call_id == "abc@10.0.0.1"
    assert m.cseq == (1, "INVITE")
    assert m.top_via.branch == "z9hG4bKabc" and m.top_via.port == 5060
    assert len(m.get_all("Via")) == 2
    assert m.from_.tag == "aaa" and m.from_.display == "Alice"
    assert m.to.tag == "bbb"
    assert m.get("subject") == "folded second line"
    assert m.body == b"v=0\r"  # Content-Length honoured, trailing bytes dropped


def test_roundtrip_request():
    m = SipMessage(method="BYE", uri="sip:x@h")
    for k, v in [("Via", "SIP/2.0/UDP h:5;branch=z9hG4bK1"), ("From", "<sip:a@h>;tag=1"),
                 ("To", "<sip:b@h>;tag=2"), ("Call-ID", "c1"), ("CSeq", "2 BYE")]:
        m.add(k, v)
    m2 = parse_message(m.encode())
    assert m2.method == "BYE" and m2.cseq == (2, "BYE") and m2.get("Content-Length") == "0"


def test_redacted_hides_credentials():
    m = SipMessage(method="INVITE", uri="sip:x@h")
    m.add("Authorization", 'Digest username="u", response="secret"')
    assert "secret" not in m.redacted()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff\x10garbage",
        b"HELLO WORLD\r\n\r\n",
        b"SIP/2.0 999 Nope\r\nVia: SIP/2.0/UDP h;branch=x\r\nFrom: <sip:a@h>\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
        b"SIP/2.0 200 OK\r\nFrom: <sip:a@h>\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",  # no Via
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=x\r\nFrom: <sip:a@h>\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: one INVITE\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=x\r\nFrom: <sip:a@h>\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 50\r\n\r\nshort",
        b"BYE sip:x@h SIP/2.0\r\nbad header line\r\n\r\n",
        b"INVITE nouri SIP/2.0\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: garbage\r\nFrom: <sip:a@h>\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
        "SIP/2.0 200 OK\r\nVia: é\r\n".encode("latin-1"),
    ],
)
def test_malformed_raise_parse_error(data):
    with pytest.raises(SipParseError):
        parse_message(data)


def test_helpers():
    assert split_commas('a, "b,c" <sip:x>, <sip:y,z>') == ['a', '"b,c" <sip:x>', "<sip:y,z>"]
    v = parse_via("SIP/2.0/UDP [::1]:5070;branch=z9hG4bKq;rport")
    assert (v.host, v.port, v.branch, v.transport) == ("::1", 5070, "z9hG4bKq", "UDP")
    na = parse_name_addr("sip:bob@h;tag=9")
    assert na.uri == "sip:bob@h" and na.tag == "9"
