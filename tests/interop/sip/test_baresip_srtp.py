"""SRTP with SDES keys against baresip (`mediaenc=srtp-mand`: it offers and takes RTP/SAVP
only): we call it over TLS, it calls us (over UDP: incoming calls are taken over UDP only, so
that test runs in development mode, where a udp trunk may carry SRTP), and each side must hear
what the other sent, decrypted."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import wave
from array import array

import numpy as np
import pytest

from services.lib.inbound import Accept, NumberRoute
from services.telephony.carrier import Answered, DialRequest, Ended

from .baresip import start_baresip, tone_sequence
from .conftest import LOOPBACK
from .test_baresip import best_ncc

pytestmark = pytest.mark.interop

OUR_HZ = 1000  # our prompt: a tone baresip's own WAV never plays


def our_prompt(seconds: float) -> bytes:
    return array("h", (int(9000 * math.sin(2 * math.pi * OUR_HZ * i / 8000))
                       for i in range(int(8000 * seconds)))).tobytes()


def heard_our_tone(path) -> int:
    """How many 20 ms frames of baresip's decoded-audio dump are loud and peak at OUR_HZ."""
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float)
        rate = w.getframerate()
    n = rate // 50
    frames = pcm[: len(pcm) // n * n].reshape(-1, n)
    hits = 0
    for f in frames:
        if np.sqrt((f ** 2).mean()) < 1000:
            continue
        spectrum = np.abs(np.fft.rfft(f * np.hanning(n)))
        if abs(np.argmax(spectrum) * rate / n - OUR_HZ) <= 50:
            hits += 1
    return hits


async def _until(call, kinds, timeout=35.0):
    ev = None
    while not isinstance(ev, kinds):
        ev = await asyncio.wait_for(call.events.get(), timeout)
    return ev


async def test_we_call_baresip_over_tls_with_srtp_and_both_sides_hear_each_other(carrier, tmp_path):
    peer = start_baresip(tmp_path, "tls", mediaenc="srtp-mand")
    try:
        carrier.tls_ca_file = peer.ca_file
        trunk = dataclasses.replace(peer.trunk, srtp="required")
        call = await carrier.dial(DialRequest("srtp1", "1000", "+15550199", timeout_s=30, trunk=trunk))
        ev = await _until(call, (Answered, Ended))
        assert isinstance(ev, Answered), (ev, peer.log()[-2000:])
        assert call.media.srtp is not None
        call.start_recording()
        assert await call.play(our_prompt(2.0))
        await asyncio.sleep(0.3)
        callee_pcm, _ = call.stop_recording()
        await call.hangup()
        assert (await _until(call, (Ended,), 5)).status == "completed"
    finally:
        peer.stop()
    # baresip's SRTP decrypted: its WAV is in the callee channel, no packet failed its check
    callee = array("h")
    callee.frombytes(callee_pcm)
    assert best_ncc(callee, tone_sequence(1.2 * 2)) > 0.9
    assert call.media.rx_unauthenticated == 0 and call.media.rx_garbage == 0
    # ours decrypted by baresip: its dump of what it decoded carries our 1 kHz prompt
    [heard] = peer.heard()
    assert heard_our_tone(heard) >= 50, peer.log()[-2000:]  # at least a second of it


async def test_baresip_refuses_our_plain_rtp_so_srtp_is_what_crosses(carrier, tmp_path):
    """The same peer, our trunk with srtp off: a plain RTP/AVP offer is refused by baresip, so
    the call that worked above did not carry plain RTP."""
    peer = start_baresip(tmp_path, "tls", mediaenc="srtp-mand")
    try:
        carrier.tls_ca_file = peer.ca_file
        call = await carrier.dial(DialRequest("srtp2", "1000", "+15550199", timeout_s=30, trunk=peer.trunk))
        ev = await _until(call, (Answered, Ended))
    finally:
        peer.stop()
    assert isinstance(ev, Ended) and ev.status == "failed" and ev.sip_code == 488, ev


@pytest.mark.parametrize("mode", ["required", "optional"])
async def test_baresip_calls_in_with_srtp_and_hears_our_prompt(tmp_path, mode):
    from services.telephony.sip import SipCarrier

    number = "+15550100"
    taken: asyncio.Queue = asyncio.Queue()

    async def router(source_ip: str, dialed: str | None):
        return Accept(NumberRoute("acct", number, flow_id="flow_x"), srtp=mode)

    carrier = SipCarrier(local_ip=LOOPBACK, router=router, on_incoming=lambda call, route, sip: taken.put_nowait(call),
                         mint_call_id=lambda: "call_in_srtp")
    await carrier.start()
    host, port = carrier.sip_addr
    peer = start_baresip(tmp_path, mediaenc="srtp-mand", commands=(f"/dial sip:{number}@{host}:{port}",))
    try:
        try:
            call = await asyncio.wait_for(taken.get(), 20)
        except TimeoutError:
            raise AssertionError(f"baresip's call never came in: {peer.log()[-2000:]}") from None
        await call.answer()
        ev = await _until(call, (Answered, Ended), 10)
        assert isinstance(ev, Answered), (ev, peer.log()[-2000:])
        assert call.media.srtp is not None
        call.start_recording()
        assert await call.play(our_prompt(2.0))
        callee_pcm, _ = call.stop_recording()
        await call.hangup()
        assert (await _until(call, (Ended,), 5)).status == "completed"
    finally:
        peer.stop()
        await carrier.close()
    caller = array("h")
    caller.frombytes(callee_pcm)
    assert best_ncc(caller, tone_sequence(1.2 * 2)) > 0.9  # baresip's WAV, decrypted
    # As a caller baresip sends one plain RTCP APP "PING" before its first SRTCP packet: dropped.
    assert call.media.rx_unauthenticated <= 1
    [heard] = peer.heard()
    assert heard_our_tone(heard) >= 50, peer.log()[-2000:]


async def test_a_plain_rtp_caller_on_a_required_trunk_gets_488(tmp_path):
    from services.telephony.sip import SipCarrier

    async def router(source_ip: str, dialed: str | None):
        return Accept(NumberRoute("acct", "+15550100", flow_id="flow_x"), srtp="required")

    taken: list = []
    carrier = SipCarrier(local_ip=LOOPBACK, router=router, on_incoming=lambda call, route, sip: taken.append(call))
    await carrier.start()
    host, port = carrier.sip_addr
    peer = start_baresip(tmp_path, commands=(f"/dial sip:+15550100@{host}:{port}",))
    try:
        for _ in range(100):
            if "488" in peer.log():
                break
            await asyncio.sleep(0.1)
    finally:
        peer.stop()
        await carrier.close()
    assert "488" in peer.log() and taken == [], peer.log()[-2000:]
