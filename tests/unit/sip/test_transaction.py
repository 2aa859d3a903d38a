import asyncio
import statistics
import time

from services.telephony.sip.message import SipMessage, parse_message
from services.telephony.sip.transaction import ClientTransaction, Timers

T = Timers(t1=0.02, t2=0.08, t4=0.05)


class FakeEndpoint:
    timers = T

    def __init__(self):
        self.sent: list[tuple[float, bytes]] = []
        self.txs = {}

    def register(self, tx):
        self.txs[tx.key] = tx

    def unregister(self, tx):
        self.txs.pop(tx.key, None)

    def send_raw(self, data, addr):
        self.sent.append((time.monotonic(), data))


def request(method: str) -> SipMessage:
    m = SipMessage(method=method, uri="sip:b@h")
    m.add("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKtest")
    m.add("From", "<sip:a@h>;tag=1")
    m.add("To", "<sip:b@h>")
    m.add("Call-ID", "cid")
    m.add("CSeq", f"1 {method}")
    return m


def response(req: SipMessage, code: int, reason: str = "X") -> SipMessage:
    r = SipMessage(status=code, reason=reason)
    for k in ("Via", "From", "Call-ID", "CSeq"):
        r.add(k, req.get(k))
    r.add("To", "<sip:b@h>;tag=remote")
    return parse_message(r.encode())


async def test_invite_timer_a_doubles_and_timer_b_fires():
    ep, events = FakeEndpoint(), []
    tx = ClientTransaction(ep, request("INVITE"), ("h", 1), events.append, lambda: events.append("timeout"))
    tx.start()
    await asyncio.sleep(64 * T.t1 + 0.1)
    assert events == ["timeout"] and tx.terminated and not ep.txs
    gaps = [b[0] - a[0] for a, b in zip(ep.sent, ep.sent[1:])]
    # A: 1, 2, 4, 8, 16, 32 x T1 (no T2 cap for INVITE) -> 7 sends within 64*T1
    assert len(ep.sent) == 7
    for g, expect in zip(gaps, (1, 2, 4, 8, 16, 32)):
        assert abs(g - expect * T.t1) < 0.015 + 0.1 * expect * T.t1


async def test_invite_provisional_stops_retransmit_and_final_is_acked():
    ep, events = FakeEndpoint(), []
    req = request("INVITE")
    tx = ClientTransaction(ep, req, ("h", 1), events.append, lambda: events.append("timeout"))
    tx.start()
    tx.receive(response(req, 180))
    n = len(ep.sent)
    await asyncio.sleep(6 * T.t1)
    assert len(ep.sent) == n  # no retransmission while ringing, and no Timer B
    tx.receive(response(req, 486, "Busy Here"))
    ack = parse_message(ep.sent[-1][1])
    assert ack.method == "ACK" and ack.top_via.branch == "z9hG4bKtest" and ack.to.tag == "remote"
    tx.receive(response(req, 486, "Busy Here"))  # retransmitted final: ACK again, not reported
    assert parse_message(ep.sent[-1][1]).method == "ACK"
    assert [e.status for e in events] == [180, 486]


async def test_non_invite_timer_e_capped_at_t2_and_timer_f():
    ep, events = FakeEndpoint(), []
    tx = ClientTransaction(ep, request("BYE"), ("h", 1), events.append, lambda: events.append("timeout"))
    tx.start()
    await asyncio.sleep(64 * T.t1 + 0.1)
    assert events == ["timeout"]
    gaps = [b[0] - a[0] for a, b in zip(ep.sent, ep.sent[1:])]
    # E doubles up to T2, then stays there. The median, not the max: on a loaded machine a
    # single timer can fire late, but a timer that kept doubling would move the median.
    assert statistics.median(gaps) < T.t2 + 0.03
    assert len(ep.sent) >= 15


async def test_non_invite_final_then_timer_k():
    ep, events = FakeEndpoint(), []
    req = request("BYE")
    tx = ClientTransaction(ep, req, ("h", 1), events.append, lambda: events.append("timeout"))
    tx.start()
    tx.receive(response(req, 200, "OK"))
    tx.receive(response(req, 200, "OK"))
    assert [e.status for e in events] == [200]
    await asyncio.sleep(T.t4 + 0.05)
    assert tx.terminated and not ep.txs
