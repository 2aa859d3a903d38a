"""Failover along a trunk's located servers (RFC 3263 4.3) in the call core: a transport
error, a silent UDP server or a 503 sends the INVITE to the next one; the reason of a call
that fails everywhere names each server tried."""

from __future__ import annotations

from services.telephony.carrier import Answered, Ended, TrunkConfig
from services.telephony.sip.core import FAILOVER
from services.telephony.sip.locate import Target

from .far import ANSWER_SDP, T, Far

A, B, C = Target("192.0.2.10", 5070, "sip1.example.net"), Target("192.0.2.11", 5080, "sip2.example.net"), \
    Target("192.0.2.12", 5090, "sip3.example.net")


def far(transport: str = "udp", targets=(A, B)) -> Far:
    trunk = TrunkConfig("example.net", None, transport, address=targets[0].address, targets=tuple(targets))
    f = Far(trunk=trunk)
    f.feed(f.core.invite(f.now))
    return f


def test_the_uri_names_the_domain_without_a_port_and_the_invite_goes_to_the_first_server():
    f = far()
    [(_, inv, addr)] = f.sent
    assert inv.uri == "sip:+15550100@example.net" and addr == ("192.0.2.10", 5070)
    assert f.timers[FAILOVER] == T.failover_s


def test_connection_refused_goes_to_the_next_server_and_the_call_is_answered_there():
    f = far("tcp")
    first = f.first("INVITE")
    f.feed(f.core.transport_failed("SIP TCP connection to 192.0.2.10:5070 failed: refused", f.now))
    assert f.ended() == []
    (_, second, addr) = f.of("INVITE")[-1]
    assert addr == ("192.0.2.11", 5080) and second.top_via.branch != first.top_via.branch
    assert second.call_id == first.call_id and second.from_.tag == first.from_.tag
    assert f.core.peer_ips == {"192.0.2.11"}
    f.respond(second, 200, "OK", body=ANSWER_SDP, headers=(("Contact", "<sip:callee@192.0.2.11:5080>"),))
    assert Answered() in f.carrier_events()
    assert f.core.tried == ["sip1.example.net (192.0.2.10:5070): SIP TCP connection to 192.0.2.10:5070 failed: refused"]


def test_503_goes_to_the_next_server_and_failing_everywhere_names_each_one():
    f = far(targets=(A, B, C))
    f.respond(f.first("INVITE"), 503, "Service Unavailable")
    f.advance(T.failover_s)  # B is silent
    assert [addr for _, _, addr in f.of("INVITE")][-1] == ("192.0.2.12", 5090)
    f.respond(f.last("INVITE"), 503, "Service Unavailable")
    [ended] = f.ended()
    assert ended.status == "failed" and ended.sip_code == 503
    assert "at sip3.example.net (192.0.2.12:5090)" in ended.reason
    assert "sip1.example.net (192.0.2.10:5070): 503 Service Unavailable" in ended.reason
    assert "sip2.example.net (192.0.2.11:5080): no response in 4 s" in ended.reason


def test_a_provisional_keeps_the_call_on_its_server():
    f = far()
    f.respond(f.first("INVITE"), 100, "Trying", tag=None)
    f.advance(T.failover_s + 1)
    assert {addr for _, _, addr in f.of("INVITE")} == {("192.0.2.10", 5070)}
    assert FAILOVER not in f.timers


def test_a_busy_callee_is_not_failed_over():
    f = far()
    f.respond(f.first("INVITE"), 486, "Busy Here")
    assert len(f.of("INVITE")) == 1 and f.ended()[0].status == "busy"


def test_the_last_server_failing_at_the_transport_fails_the_call_with_the_servers_tried():
    f = far("tcp")
    f.feed(f.core.transport_failed("refused", f.now))
    f.feed(f.core.transport_failed("timed out", f.now))
    [ended] = f.ended()
    assert ended == Ended("failed", "timed out (at sip2.example.net (192.0.2.11:5080); tried before:"
                          " sip1.example.net (192.0.2.10:5070): refused)", None, "system")


def test_a_call_answered_after_a_failover_says_so_when_it_ends():
    f = far("tcp")
    f.feed(f.core.transport_failed("refused", f.now))
    f.respond(f.last("INVITE"), 200, "OK", body=ANSWER_SDP, headers=(("Contact", "<sip:callee@192.0.2.11:5080>"),))
    f.feed(f.core.hangup(f.now))
    [ended] = f.ended()
    assert ended.status == "completed" and ended.reason == (
        "hung up by caller (at sip2.example.net (192.0.2.11:5080); tried before: sip1.example.net"
        " (192.0.2.10:5070): refused)")


def test_a_late_answer_from_the_server_failed_over_from_is_not_taken():
    f = far()
    first = f.first("INVITE")
    f.advance(T.failover_s)  # A silent: the INVITE goes to B
    f.respond(first, 200, "OK", body=ANSWER_SDP, headers=(("Contact", "<sip:callee@192.0.2.10:5070>"),))
    assert Answered() not in f.carrier_events() and f.of("ACK") == []
    f.respond(f.last("INVITE"), 200, "OK", body=ANSWER_SDP, headers=(("Contact", "<sip:callee@192.0.2.11:5080>"),))
    assert Answered() in f.carrier_events() and f.of("ACK")[0][2] == ("192.0.2.11", 5080)
