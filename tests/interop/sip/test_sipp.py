"""The SIP carrier against SIPp as the far end (one call per SIPp process)."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics

import pytest

from services.telephony.carrier import Answered, DialRequest, DtmfReceived, Ended, Ringing, TransferProgress, TrunkConfig
from services.telephony.sip import SipCarrier
from services.telephony.sip.dtmf import parse_event
from services.telephony.sip.rtcp import SR, parse_compound

from .conftest import LOOPBACK, lateness_ms, write_dtmf_pcap

pytestmark = pytest.mark.interop


async def next_event(call, timeout: float = 10.0):
    return await asyncio.wait_for(call.events.get(), timeout)


async def until(call, kind, timeout: float = 10.0):
    """Events up to and including the first of type ``kind``."""
    seen = []
    while True:
        ev = await next_event(call, timeout)
        seen.append(ev)
        if isinstance(ev, kind) or isinstance(ev, Ended):
            return seen


async def poll(cond, timeout: float = 30.0) -> None:
    """Until ``cond()`` holds; fails after ``timeout`` (which only bounds a hang)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def dial(to: str = "+15550100", timeout_s: float = 10.0, trunk: TrunkConfig | None = None) -> DialRequest:
    return DialRequest(call_id=os.urandom(4).hex(), to=to, from_="+15550199", timeout_s=timeout_s, trunk=trunk)


async def test_answer_sends_paced_pcmu_and_rtcp(carrier, sipp, rtp_listener):
    uas = sipp("uas_answer.xml", sets={"rtp_port": str(rtp_listener.port)})
    call = await carrier.dial(dial(trunk=uas.trunk))
    evs = await until(call, Answered)
    assert [type(e) for e in evs] == [Ringing, Answered]
    assert await call.play(bytes(320 * 100))  # 2 s of audio
    await call.send_dtmf("1#")
    # an RTCP report goes out every 0.5-1 s in this fixture; the call stays up until one arrived
    await poll(lambda: any(p.packet_type == SR for data in list(rtp_listener.rtcp) for p in parse_compound(data)))
    await call.hangup()
    assert (await next_event(call)) == Ended("completed", "hung up by caller", None, "caller")
    assert uas.wait() == 0, uas.errors()

    audio = [r for r in rtp_listener.packets if r.pkt.payload_type == 0]
    assert len(audio) >= 100
    assert audio[0].pkt.marker and not any(r.pkt.marker for r in audio[1:])
    assert len({r.pkt.ssrc for r in rtp_listener.packets}) == 1
    for a, b in zip(audio, audio[1:]):
        # one frame per packet; gaps only where DTMF event packets took the slot
        assert b.pkt.timestamp - a.pkt.timestamp == 160 * ((b.pkt.seq - a.pkt.seq) & 0xFFFF)
    assert all(len(r.pkt.payload) == 160 for r in audio)
    # Pacing, in robust statistics (times are kernel send stamps, see RtpListener): a busy
    # machine delays some packets, which must not fail the test; a sender that drifts or
    # bursts must. The jitter figures themselves (SIPp as the baseline) are bench/sip_load.py's.
    late = lateness_ms(audio)
    q = len(late) // 4
    drift = statistics.median(late[-q:]) - statistics.median(late[:q])
    assert abs(drift) < 20.0, drift  # no drift against the media clock (< 0.3 ms a frame)
    gaps = [(b.at - a.at) * 1000 for a, b in zip(audio, audio[1:]) if b.pkt.seq == (a.pkt.seq + 1) & 0xFFFF]
    dev = statistics.median(abs(g - 20.0) for g in gaps)
    assert dev < 15.0, dev  # one packet per 20 ms; frames sent in pairs (gaps 0, 40, ...) would give 20

    events = [r.pkt for r in rtp_listener.packets if r.pkt.payload_type == 101]
    ends = [parse_event(p.payload) for p in events if parse_event(p.payload).end]
    assert [e.event for e in ends] == [1, 1, 1, 11, 11, 11]  # each end packet sent 3 times
    assert sum(p.marker for p in events) == 2


async def test_receives_rfc4733_dtmf_from_sipp(carrier, sipp, tmp_path):
    write_dtmf_pcap(tmp_path / "dtmf.pcap", "1234#")
    uas = sipp("uas_dtmf.xml")
    call = await carrier.dial(dial(trunk=uas.trunk))
    await until(call, Answered)
    digits = []
    while len(digits) < 5:
        ev = await next_event(call, 10)
        assert isinstance(ev, DtmfReceived), ev
        digits.append(ev)
    assert [d.digit for d in digits] == ["1", "2", "3", "4", "#"]
    assert all(d.method == "rfc4733" and d.duration_ms == 100 for d in digits)
    await asyncio.sleep(0.3)
    assert call.events.empty()  # the retransmitted end packets did not repeat digits
    await call.hangup()
    assert uas.wait() == 0, uas.errors()


async def test_busy(carrier, sipp):
    uas = sipp("uas_busy.xml")
    call = await carrier.dial(dial(trunk=uas.trunk))
    ev = (await until(call, Ended))[-1]
    assert (ev.status, ev.sip_code, ev.reason) == ("busy", 486, "Busy Here")
    assert uas.wait() == 0, uas.errors()  # SIPp got its ACK


async def test_ring_timeout_cancels_no_answer(carrier, sipp):
    uas = sipp("uas_noanswer.xml")
    call = await carrier.dial(dial(trunk=uas.trunk, timeout_s=1.0))
    evs = await until(call, Ended)
    assert isinstance(evs[0], Ringing)
    assert (evs[-1].status, evs[-1].sip_code) == ("no-answer", 487)
    assert uas.wait() == 0, uas.errors()


async def test_hangup_before_answer_is_canceled(carrier, sipp):
    uas = sipp("uas_noanswer.xml")
    call = await carrier.dial(dial(trunk=uas.trunk))
    assert isinstance(await next_event(call), Ringing)
    await call.hangup()
    ev = await next_event(call)
    assert (ev.status, ev.hangup_by) == ("canceled", "caller")
    assert uas.wait() == 0, uas.errors()


async def test_digest_challenge_then_answer(carrier, sipp):
    uas = sipp("uas_auth.xml")
    trunk = TrunkConfig(LOOPBACK, uas.port, username="alice", password="s3cret")
    call = await carrier.dial(dial(trunk=trunk))
    evs = await until(call, Answered)
    assert isinstance(evs[-1], Answered), evs
    await call.hangup()
    assert uas.wait() == 0, uas.errors()


async def test_digest_wrong_password_fails(carrier, sipp):
    uas = sipp("uas_auth.xml")
    trunk = TrunkConfig(LOOPBACK, uas.port, username="alice", password="wrong")
    call = await carrier.dial(dial(trunk=trunk))
    ev = (await until(call, Ended))[-1]
    assert (ev.status, ev.sip_code) == ("failed", 403)
    assert "wrong" not in repr(trunk)
    uas.wait()


async def test_bye_from_far_end_completes(carrier, sipp):
    uas = sipp("uas_bye.xml")
    call = await carrier.dial(dial(trunk=uas.trunk))
    evs = await until(call, Ended, timeout=10)
    assert isinstance(evs[-2], Answered)
    assert (evs[-1].status, evs[-1].hangup_by) == ("completed", "callee")
    assert uas.wait() == 0, uas.errors()


async def test_media_timeout(sipp, rtp_listener):
    c = SipCarrier(local_ip=LOOPBACK, media_timeout_s=1.0)
    try:
        uas = sipp("uas_answer.xml", sets={"rtp_port": str(rtp_listener.port)})
        call = await c.dial(dial(trunk=uas.trunk))
        await until(call, Answered)
        ev = await next_event(call, 30)
        assert (ev.status, ev.reason, ev.hangup_by) == ("failed", "media timeout", "system")
        assert uas.wait() == 0, uas.errors()  # SIPp received our BYE
    finally:
        await c.close()


GARBAGE = [
    b"",
    os.urandom(1),
    os.urandom(700),
    b"\r\n\r\n",
    b"INVITE sip:x SIP/2.0\r\n\r\n",
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKnope\r\nFrom: <sip:a@b>\r\nTo: <sip:c@d>\r\n"
    b"Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 9999\r\n\r\n",
    b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKnope\r\nFrom: <sip:a@b>\r\nTo: <sip:c@d>\r\n"
    b"Call-ID: unknown\r\nCSeq: 1 INVITE\r\n\r\n",
    b"BYE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKb\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n"
    b"Call-ID: not-ours\r\nCSeq: 5 BYE\r\n\r\n",
    b"\x80\x00\x00\x01" + b"\x00" * 8 + b"\xff" * 160,  # RTP with an unnegotiated payload type
    b"\xbf\x00\x00\x01" + b"\x00" * 8,  # RTP claiming 15 CSRCs it does not have
    b"\x80\xc8\x00\x40" + b"\x00" * 20,  # truncated RTCP SR
]


async def test_garbage_datagrams_do_not_disturb_a_call(carrier, sipp, rtp_listener):
    uas = sipp("uas_answer.xml", sets={"rtp_port": str(rtp_listener.port)})
    call = await carrier.dial(dial(trunk=uas.trunk))
    await until(call, Answered)
    targets = [carrier.sip_addr, (LOOPBACK, call.media.local_port), (LOOPBACK, call.media.local_port + 1)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(20):
            for data in GARBAGE:
                for t in targets:
                    s.sendto(data, t)
    assert await call.play(bytes(320 * 10))
    assert call.events.empty()
    assert carrier.endpoint.garbage > 0 and call.media.rx_garbage > 0
    await call.hangup()
    assert (await next_event(call)).status == "completed"
    assert uas.wait() == 0, uas.errors()


async def test_a_trunk_requiring_100rel_gets_its_prack(carrier, sipp, rtp_listener):
    """SIPp checks the INVITE offers 100rel and the PRACK's RAck (the scenario fails otherwise);
    the 200 OK only comes after the PRACK, so an answered call proves it was sent."""
    uas = sipp("uas_100rel.xml", sets={"rtp_port": str(rtp_listener.port)})
    call = await carrier.dial(dial(trunk=uas.trunk))
    evs = await until(call, Answered)
    assert [type(e) for e in evs] == [Ringing, Answered], evs
    await call.hangup()
    assert uas.wait() == 0, uas.errors()


async def test_session_timer_refreshed_with_update_while_the_call_lasts(carrier, sipp, rtp_listener):
    """The trunk sets a 4 s session with us as the refresher: two UPDATEs (at 2 s and 4 s, SIPp
    checks each one's Session-Expires) keep it alive, then our BYE ends it."""
    uas = sipp("uas_session_timer.xml", sets={"rtp_port": str(rtp_listener.port)})
    call = await carrier.dial(dial(trunk=uas.trunk))
    await until(call, Answered)
    assert call.core.session == (4, "uac")
    await asyncio.sleep(4.6)
    assert call.ended is None  # still up: refreshed, not expired
    await call.hangup()
    assert uas.wait() == 0, uas.errors()


async def test_blind_transfer_with_refer_ends_the_call_once_the_far_end_is_connected(carrier, sipp, rtp_listener):
    """SIPp takes our REFER (it checks Refer-To and Referred-By), 202, then NOTIFYs 100 Trying and
    200 OK: the transfer is reported as it goes and, connected, our BYE ends the call."""
    uas = sipp("uas_refer.xml", sets={"rtp_port": str(rtp_listener.port)})
    call = await carrier.dial(dial(trunk=uas.trunk))
    await until(call, Answered)
    assert await call.transfer("+15550111")
    evs = await until(call, Ended)
    assert evs == [TransferProgress(202, "Accepted"), TransferProgress(100, "Trying"),
                   TransferProgress(200, "OK", final=True),
                   Ended("completed", "transferred to tel:+15550111", None, "system")], evs
    assert uas.wait() == 0, uas.errors()


async def test_a_failed_transfer_leaves_the_call_up(carrier, sipp, rtp_listener):
    uas = sipp("uas_refer_busy.xml", sets={"rtp_port": str(rtp_listener.port)})
    call = await carrier.dial(dial(trunk=uas.trunk))
    await until(call, Answered)
    assert await call.transfer("tel:+15550111")
    evs = await until(call, TransferProgress)
    while not evs[-1].final:
        evs += await until(call, TransferProgress)
    assert evs[-1] == TransferProgress(486, "Busy Here", final=True), evs
    await asyncio.sleep(0.3)
    assert call.ended is None and call.state == "confirmed"
    await call.hangup()
    assert (await next_event(call)) == Ended("completed", "hung up by caller", None, "caller")
    assert uas.wait() == 0, uas.errors()
