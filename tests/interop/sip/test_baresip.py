"""The SIP carrier against baresip as an auto-answering callee that plays a WAV file."""

from __future__ import annotations

import asyncio
import math
import operator
import random
from array import array

import pytest

from services.telephony.carrier import Answered, DialRequest, Ended, TrunkConfig

from .baresip import TONES, start_baresip, tone_sequence
from .conftest import LOOPBACK

pytestmark = pytest.mark.interop


def ncc(a, b) -> float:
    num = sum(map(operator.mul, a, b))
    den = math.sqrt(sum(map(operator.mul, a, a)) * sum(map(operator.mul, b, b)))
    return num / den if den else 0.0


def best_ncc(recording: array, reference: array, window: int = 400) -> float:
    """Highest normalized correlation of a window of ``recording`` with ``reference``
    over every lag within one period of the reference."""
    start = len(recording) // 2
    seg = recording[start : start + window]
    period = 1600 * len(TONES)
    return max(ncc(seg, reference[lag : lag + window]) for lag in range(period))


@pytest.fixture(params=["udp"])
def baresip(request, tmp_path):
    """baresip auto-answering on loopback, reached over ``request.param`` (udp, tcp, tls)."""
    peer = start_baresip(tmp_path, request.param)
    yield peer
    peer.stop()


@pytest.mark.parametrize("baresip", ["udp", "tcp", "tls"], indirect=True)
async def test_recording_holds_callee_wav_and_our_audio_apart(carrier, baresip):
    """The same call over each transport: the signalling differs, the media must not."""
    trunk = baresip.trunk
    if baresip.ca_file:
        carrier.tls_ca_file = baresip.ca_file  # trust the throwaway CA
    # Generous: baresip can take a while to register its UA on a loaded machine.
    call = await carrier.dial(DialRequest("bs1", "1000", "+15550199", timeout_s=30, trunk=trunk))
    ev = None
    while not isinstance(ev, (Answered, Ended)):
        ev = await asyncio.wait_for(call.events.get(), 35)
    assert isinstance(ev, Answered), ev
    rnd = random.Random(7)
    ours_played = array("h", (int(rnd.gauss(0, 3000)) for _ in range(8000 * 2))).tobytes()
    frames = []
    call.on_audio(frames.append)
    call.start_recording()
    assert await call.play(ours_played)
    await asyncio.sleep(0.5)
    callee_pcm, our_pcm = call.stop_recording()
    await call.hangup()
    assert (await asyncio.wait_for(call.events.get(), 5)).status == "completed"

    assert len(callee_pcm) == len(our_pcm) > 0
    assert ours_played in our_pcm  # our channel: exactly what we sent, in one piece
    assert frames and all(len(f) == 320 for f in frames)

    callee, ours, ref = array("h"), array("h"), tone_sequence(1.2 * 2)
    callee.frombytes(callee_pcm)
    ours.frombytes(our_pcm)
    assert best_ncc(callee, ref) > 0.9  # the callee channel carries baresip's WAV
    assert best_ncc(ours, ref) < 0.3  # ... and our channel does not
    played = array("h")
    played.frombytes(ours_played)
    mid = len(callee) // 2
    assert abs(ncc(callee[mid : mid + 4000], played[:4000])) < 0.1  # no leak of ours into theirs


@pytest.mark.parametrize("baresip", ["tls"], indirect=True)
async def test_tls_refuses_a_certificate_it_cannot_verify(carrier, baresip):
    """Without the peer's CA (the system's CAs only), the handshake fails and so does the call,
    at once and saying why; nothing is sent in the clear."""
    call = await carrier.dial(DialRequest("bs2", "1000", "+15550199", timeout_s=30, trunk=baresip.trunk))
    ev = await asyncio.wait_for(call.events.get(), 10)
    assert isinstance(ev, Ended) and ev.status == "failed", ev
    assert "SIP TLS connection" in ev.reason and "CERTIFICATE_VERIFY_FAILED" in ev.reason, ev.reason


@pytest.mark.parametrize("baresip", ["tls"], indirect=True)
async def test_tls_checks_the_name_not_only_the_chain(carrier, baresip):
    """The certificate chains to the CA we trust but names 127.0.0.1; a trunk configured as
    `localhost` (resolving to the same address) must not accept it."""
    carrier.tls_ca_file = baresip.ca_file
    trunk = TrunkConfig("localhost", baresip.trunk.port, transport="tls", address=LOOPBACK)
    call = await carrier.dial(DialRequest("bs3", "1000", "+15550199", timeout_s=30, trunk=trunk))
    ev = await asyncio.wait_for(call.events.get(), 10)
    assert isinstance(ev, Ended) and ev.status == "failed", ev
    assert "CERTIFICATE_VERIFY_FAILED" in ev.reason or "match" in ev.reason, ev.reason
