"""SIP over TCP/TLS without sockets: the call core on a reliable transport (no
retransmissions, nothing lingering, Via/Contact/URI naming the transport), a broken
connection failing the call at once, and the stream framer."""

from __future__ import annotations

import pytest

from services.telephony.carrier import Ended, TrunkConfig
from services.telephony.sip.core import sip_uri
from services.telephony.sip.message import MAX_DATAGRAM
from services.telephony.sip.stream import Framer

from .far import ANSWER_SDP, TRUNK, T, started


def tcp_far(transport: str = "tcp"):
    return started(trunk=TrunkConfig(*TRUNK, transport=transport))


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_invite_over_a_stream_names_its_transport_and_arms_no_retransmission(transport):
    far = tcp_far(transport)
    [(_, inv, addr)] = far.sent
    assert addr == TRUNK
    assert inv.get("Via").startswith(f"SIP/2.0/{transport.upper()} 192.0.2.1:5062;branch=z9hG4bK")
    assert inv.get("Contact") == f"<sip:canary@192.0.2.1:5062;transport={transport}>"
    port = "" if transport == "tcp" else ":5060"  # 5061 is TLS's default port, 5060 is not
    assert inv.uri == f"sip:+15550100@192.0.2.10{port};transport={transport}"
    assert sorted(t.name for t in far.timers) == ["B", "ring"]  # no Timer A
    far.advance(30)
    assert len(far.of("INVITE")) == 1
    far.advance(3)  # Timer B (64*T1) still gives up on a silent peer
    assert far.ended() == [Ended("failed", "no response from SIP trunk (timeout)", None, "system")]


def test_busy_over_tcp_is_acked_once_and_the_call_is_done_at_once():
    far = tcp_far()
    inv = far.first("INVITE")
    far.respond(inv, 486, "Busy Here")
    assert len(far.of("ACK")) == 1
    assert far.ended()[0].status == "busy"
    far.advance(0)  # Timer D is zero on a reliable transport (32 s over UDP)
    assert far.timers == {} and far.core.finished


def test_bye_over_tcp_is_not_retransmitted():
    far = tcp_far()
    inv = far.first("INVITE")
    far.respond(inv, 200, "OK", body=ANSWER_SDP, headers=(("Contact", "<sip:callee@192.0.2.10;transport=tcp>"),))
    far.feed(far.core.hangup(far.now))
    far.advance(10 * T.t2)
    assert len(far.of("BYE")) == 1


def test_connection_failure_fails_the_call_with_the_reason():
    far = tcp_far()
    far.feed(far.core.transport_failed("SIP TCP connection to 192.0.2.10:5060 failed: refused", far.now))
    assert far.ended() == [Ended("failed", "SIP TCP connection to 192.0.2.10:5060 failed: refused", None, "system")]
    assert far.core.finished and far.timers == {}
    far.feed(far.core.transport_failed("again", far.now))  # a second report changes nothing
    assert len(far.ended()) == 1


def test_unknown_transport_fails_before_anything_is_sent():
    far = tcp_far("sctp")
    assert far.sent == [] and far.ended()[0].reason == "unsupported SIP transport sctp"


def test_sip_uri_keeps_the_transport_and_its_default_port():
    assert sip_uri("+1555", "pbx.example", 5060) == "sip:+1555@pbx.example"
    assert sip_uri("+1555", "pbx.example", 5060, "tcp") == "sip:+1555@pbx.example;transport=tcp"
    assert sip_uri("+1555", "pbx.example", 5061, "tls") == "sip:+1555@pbx.example;transport=tls"
    assert sip_uri("+1555", "pbx.example", 5060, "tls") == "sip:+1555@pbx.example:5060;transport=tls"
    assert sip_uri("sip:bob@x", "pbx.example", 5060, "tcp") == "sip:bob@x"  # a given URI is kept as given


OPTIONS = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: a\r\nContent-Length: 0\r\n\r\n"
WITH_BODY = b"MESSAGE sip:x SIP/2.0\r\nl: 5\r\n\r\nhello"


def test_framer_cuts_messages_across_and_within_chunks():
    f = Framer()
    stream = b"\r\n\r\n" + OPTIONS + WITH_BODY + OPTIONS  # keep-alive CRLFs first
    out = []
    for i in range(0, len(stream), 7):  # 7-byte chunks: every boundary falls mid-header somewhere
        out += f.feed(stream[i:i + 7])
    assert out == [OPTIONS, WITH_BODY, OPTIONS]
    assert Framer().feed(OPTIONS + WITH_BODY) == [OPTIONS, WITH_BODY]


def test_framer_waits_for_the_whole_body():
    f = Framer()
    assert f.feed(WITH_BODY[:-2]) == []
    assert f.feed(WITH_BODY[-2:]) == [WITH_BODY]


@pytest.mark.parametrize("data, why", [
    (b"OPTIONS sip:x SIP/2.0\r\nCall-ID: a\r\n\r\n", "without Content-Length"),
    (b"INVITE sip:x SIP/2.0\r\nContent-Length: %d\r\n\r\n" % MAX_DATAGRAM, "too large"),
    (b"X" * (MAX_DATAGRAM + 1), "header block too large"),
])
def test_framer_refuses_what_it_cannot_bound(data, why):
    with pytest.raises(ValueError, match=why):
        Framer().feed(data)
