"""The SIP carrier over TCP, SIPp as the far end (`-t t1`: one TCP connection).

What SIPp logs with -trace_msg is what crossed the connection, so the tests read the Via
and Contact we sent from it; SIPp's exit code says its side of the dialog completed."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.telephony.carrier import Answered, Ended, Ringing, TrunkConfig

from .conftest import LOOPBACK, free_tcp_port
from .test_sipp import dial, next_event, until

pytestmark = pytest.mark.interop


def sent_to_sipp(uas) -> str:
    """Every message SIPp received, as it logged them."""
    return "\n".join(p.read_text(errors="replace") for p in uas.workdir.glob("*_messages.log"))


async def test_answered_call_over_tcp_plays_audio_and_hangs_up(carrier, sipp, rtp_listener):
    uas = sipp("uas_answer.xml", transport="tcp", sets={"rtp_port": str(rtp_listener.port)}, extra=["-trace_msg"])
    call = await carrier.dial(dial(trunk=uas.trunk))
    evs = await until(call, Answered)
    assert [type(e) for e in evs] == [Ringing, Answered]
    assert await call.play(bytes(320 * 25))  # 0.5 s
    await call.hangup()
    assert (await next_event(call)) == Ended("completed", "hung up by caller", None, "caller")
    assert uas.wait() == 0, uas.errors()  # SIPp saw INVITE, ACK and our BYE, all over TCP
    log = sent_to_sipp(uas)
    port = carrier.streams["tcp"].local_addr[1]
    assert f"Via: SIP/2.0/TCP {LOOPBACK}:{port};branch=" in log
    assert f"Contact: <sip:canary@{LOOPBACK}:{port};transport=tcp>" in log
    assert f"INVITE sip:+15550100@{LOOPBACK}:{uas.port};transport=tcp SIP/2.0" in log
    # reliable transport: the INVITE went out once (no Timer A retransmission), as did the BYE
    assert log.count("INVITE sip:") == 1 and log.count("BYE sip:") == 1
    assert len([r for r in rtp_listener.packets if r.pkt.payload_type == 0]) >= 25


async def test_busy_over_tcp_is_acked_on_the_connection(carrier, sipp):
    uas = sipp("uas_busy.xml", transport="tcp")
    call = await carrier.dial(dial(trunk=uas.trunk))
    ev = (await until(call, Ended))[-1]
    assert (ev.status, ev.sip_code) == ("busy", 486)
    assert uas.wait() == 0, uas.errors()  # SIPp got its ACK over TCP


async def test_bye_from_the_far_end_over_tcp(carrier, sipp):
    uas = sipp("uas_bye.xml", transport="tcp")
    call = await carrier.dial(dial(trunk=uas.trunk))
    evs = await until(call, Ended, timeout=10)
    assert isinstance(evs[-2], Answered)
    assert (evs[-1].status, evs[-1].hangup_by) == ("completed", "callee")
    assert uas.wait() == 0, uas.errors()  # our 200 OK to its BYE went back on the connection


async def test_no_one_listening_fails_at_once_not_after_timer_b(carrier):
    port = free_tcp_port()  # nothing listens there: the connection is refused
    t0 = time.monotonic()
    call = await carrier.dial(dial(trunk=TrunkConfig(LOOPBACK, port, transport="tcp")))
    ev = (await until(call, Ended, timeout=10))[-1]
    assert ev.status == "failed" and ev.hangup_by == "system"
    assert f"SIP TCP connection to {LOOPBACK}:{port} failed" in ev.reason
    assert time.monotonic() - t0 < 5  # Timer B would be 32 s


async def test_a_peer_sending_unframed_bytes_is_disconnected(carrier, sipp):
    """A stream without Content-Length cannot be framed: the connection is closed, the
    carrier goes on (a call afterwards works)."""
    ep = await carrier._stream("tcp")
    reader, writer = await asyncio.open_connection(LOOPBACK, ep.local_addr[1])
    writer.write(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4\r\n\r\n")  # no Content-Length
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by us
    writer.close()
    uas = sipp("uas_busy.xml", transport="tcp")
    call = await carrier.dial(dial(trunk=uas.trunk))
    assert (await until(call, Ended))[-1].status == "busy"

