"""The SIP carrier against baresip as an auto-answering callee that plays a WAV file."""

from __future__ import annotations

import asyncio
import math
import operator
import random
import shutil
import subprocess
import time
import wave
from array import array

import pytest

from services.telephony.carrier import Answered, DialRequest, Ended, TrunkConfig

from .conftest import LOOPBACK, free_udp_port

pytestmark = pytest.mark.interop

TONES = (500, 900, 1300, 1700, 2100, 2500)  # 200 ms each, repeated


def tone_sequence(seconds: float) -> array:
    out = array("h")
    for k in range(int(seconds * 5)):
        f = TONES[k % len(TONES)]
        out.extend(int(8000 * math.sin(2 * math.pi * f * i / 8000)) for i in range(1600))
    return out


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


@pytest.fixture
def baresip(tmp_path):
    if shutil.which("baresip") is None:
        pytest.skip("baresip is not installed")
    port = free_udp_port()
    rtp_lo = free_udp_port(even=True)
    prompt = tmp_path / "prompt.wav"
    with wave.open(str(prompt), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone_sequence(12).tobytes())
    cfg = tmp_path / "baresip"
    cfg.mkdir()
    (cfg / "config").write_text(
        # net_interface: its SDP must name the loopback it sends RTP from (the carrier
        # accepts RTP only from the address the SDP answer names)
        f"poll_method epoll\nnet_interface {LOOPBACK}\nsip_listen {LOOPBACK}:{port}\nsip_trans_def udp\n"
        f"audio_source aufile,{prompt}\naudio_alert aufile,{prompt}\naudio_player aufile,{tmp_path / 'x.wav'}\n"
        "module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule_app account.so\n"
        f"rtp_ports {rtp_lo}-{rtp_lo + 20}\n"
    )
    (cfg / "accounts").write_text(f"<sip:1000@{LOOPBACK}>;regint=0;answermode=auto;audio_codecs=PCMU\n")
    log = open(tmp_path / "baresip.out", "wb")
    proc = subprocess.Popen(["baresip", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while b"baresip is ready" not in (tmp_path / "baresip.out").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield TrunkConfig(LOOPBACK, port)
    proc.terminate()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


async def test_recording_holds_callee_wav_and_our_audio_apart(carrier, baresip):
    # Generous: baresip can take a while to register its UA on a loaded machine.
    call = await carrier.dial(DialRequest("bs1", "1000", "+15550199", timeout_s=30, trunk=baresip))
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
