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


def self_signed(tmp_path) -> tuple[str, str]:
    """A throwaway certificate for 127.0.0.1 (and its key) as one PEM, and the same certificate
    alone as the CA file a client trusts."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "canary-test-peer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    (tmp_path / "peer.pem").write_bytes(cert_pem + key_pem)
    (tmp_path / "ca.pem").write_bytes(cert_pem)
    return str(tmp_path / "peer.pem"), str(tmp_path / "ca.pem")


@pytest.fixture(params=["udp"])
def baresip(request, tmp_path):
    """baresip auto-answering on loopback; the trunk to reach it over ``request.param`` (udp,
    tcp, tls: TLS on the SIP port + 1 with a throwaway certificate, whose CA file is the
    trunk's ``ca_file`` attribute here)."""
    if shutil.which("baresip") is None:
        pytest.skip("baresip is not installed")
    transport = request.param
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
    cert, ca = self_signed(tmp_path) if transport == "tls" else (None, None)
    (cfg / "config").write_text(
        # net_interface: its SDP must name the loopback it sends RTP from (the carrier
        # accepts RTP only from the address the SDP answer names)
        f"poll_method epoll\nnet_interface {LOOPBACK}\nsip_listen {LOOPBACK}:{port}\nsip_trans_def udp\n"
        f"audio_source aufile,{prompt}\naudio_alert aufile,{prompt}\naudio_player aufile,{tmp_path / 'x.wav'}\n"
        "module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule_app account.so\n"
        f"rtp_ports {rtp_lo}-{rtp_lo + 20}\n" + (f"sip_certificate {cert}\n" if cert else "")
    )
    (cfg / "accounts").write_text(f"<sip:1000@{LOOPBACK}>;regint=0;answermode=auto;audio_codecs=PCMU\n")
    log = open(tmp_path / "baresip.out", "wb")
    proc = subprocess.Popen(["baresip", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while b"baresip is ready" not in (tmp_path / "baresip.out").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    trunk = TrunkConfig(LOOPBACK, port + 1 if transport == "tls" else port, transport=transport)
    yield trunk if ca is None else _WithCa(trunk, ca)
    proc.terminate()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


class _WithCa:
    def __init__(self, trunk: TrunkConfig, ca_file: str) -> None:
        self.trunk, self.ca_file = trunk, ca_file


@pytest.mark.parametrize("baresip", ["udp", "tcp", "tls"], indirect=True)
async def test_recording_holds_callee_wav_and_our_audio_apart(carrier, baresip):
    """The same call over each transport: the signalling differs, the media must not."""
    trunk = baresip
    if isinstance(baresip, _WithCa):
        carrier.tls_ca_file, trunk = baresip.ca_file, baresip.trunk  # trust the throwaway CA
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
