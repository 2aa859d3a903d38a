"""Client transaction timers (RFC 3261 17.1) at their RFC values, on virtual time.

The transaction arms its timers with ``loop.call_later``; on a virtual-time loop they
fire at exact instants, so the schedule is asserted exactly and no test waits for real.
"""

import asyncio

import pytest

from services.telephony.sip.message import SipMessage, parse_message
from services.telephony.sip.transaction import ClientTransaction, Timers

from .vclock import run_virtual

T = Timers()  # RFC 3261 defaults: T1 0.5 s, T2 4 s, T4 5 s
EPS = 1e-3


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
        self.sent.append((asyncio.get_running_loop().time(), data))

    def send_times(self) -> list[float]:
        return [t - self.sent[0][0] for t, _ in self.sent]


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


def test_invite_timer_a_doubles_and_timer_b_fires():
    ep, events = FakeEndpoint(), []

    async def main():
        tx = ClientTransaction(ep, request("INVITE"), ("h", 1), events.append, lambda: events.append("timeout"))
        tx.start()
        await asyncio.sleep(64 * T.t1 - EPS)
        assert events == [] and not tx.terminated  # Timer B is 64*T1, not sooner
        await asyncio.sleep(2 * EPS)
        assert events == ["timeout"] and tx.terminated and not ep.txs

    run_virtual(main)
    # A: 1, 2, 4, 8, 16, 32 x T1 (no T2 cap for INVITE) -> 7 sends within 64*T1
    assert ep.send_times() == pytest.approx([0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5])


def test_invite_provisional_stops_retransmit_and_final_is_acked():
    ep, events = FakeEndpoint(), []
    req = request("INVITE")

    async def main():
        tx = ClientTransaction(ep, req, ("h", 1), events.append, lambda: events.append("timeout"))
        tx.start()
        tx.receive(response(req, 180))
        n = len(ep.sent)
        await asyncio.sleep(64 * T.t1 + 10)
        assert len(ep.sent) == n  # no retransmission while ringing ...
        assert "timeout" not in events and not tx.terminated  # ... and no Timer B: ringing may last
        tx.receive(response(req, 486, "Busy Here"))
        ack = parse_message(ep.sent[-1][1])
        assert ack.method == "ACK" and ack.top_via.branch == "z9hG4bKtest" and ack.to.tag == "remote"
        tx.receive(response(req, 486, "Busy Here"))  # retransmitted final: ACK again, not reported
        assert parse_message(ep.sent[-1][1]).method == "ACK"
        await asyncio.sleep(32 - EPS)
        assert not tx.terminated  # Timer D (32 s for UDP) still absorbs retransmissions
        await asyncio.sleep(2 * EPS)
        assert tx.terminated and not ep.txs

    run_virtual(main)
    assert [e.status for e in events] == [180, 486]


def test_non_invite_timer_e_capped_at_t2_and_timer_f():
    ep, events = FakeEndpoint(), []

    async def main():
        tx = ClientTransaction(ep, request("BYE"), ("h", 1), events.append, lambda: events.append("timeout"))
        tx.start()
        await asyncio.sleep(64 * T.t1 - EPS)
        assert events == []
        await asyncio.sleep(2 * EPS)
        assert events == ["timeout"] and tx.terminated  # Timer F: 64*T1

    run_virtual(main)
    # E doubles from T1 up to T2, then stays at T2
    times = ep.send_times()
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps == pytest.approx([0.5, 1, 2] + [T.t2] * 7)


def test_non_invite_final_then_timer_k():
    ep, events = FakeEndpoint(), []
    req = request("BYE")

    async def main():
        tx = ClientTransaction(ep, req, ("h", 1), events.append, lambda: events.append("timeout"))
        tx.start()
        tx.receive(response(req, 200, "OK"))
        tx.receive(response(req, 200, "OK"))
        assert [e.status for e in events] == [200]
        await asyncio.sleep(T.t4 - EPS)
        assert not tx.terminated and len(ep.sent) == 1  # no retransmission after the final
        await asyncio.sleep(2 * EPS)
        assert tx.terminated and not ep.txs  # Timer K: T4

    run_virtual(main)
