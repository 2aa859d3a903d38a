"""baresip as a SIP peer for tests: an auto-answering callee (or, with commands, a caller)
on loopback, playing a WAV of tones, over UDP, TCP or TLS (a throwaway certificate)."""

from __future__ import annotations

import datetime
import ipaddress
import math
import shutil
import socket
import subprocess
import time
import wave
from array import array
from dataclasses import dataclass
from pathlib import Path

from services.telephony.carrier import TrunkConfig

from .conftest import LOOPBACK, free_udp_port

TONES = (500, 900, 1300, 1700, 2100, 2500)  # 200 ms each, repeated


def tone_sequence(seconds: float) -> array:
    out = array("h")
    for k in range(int(seconds * 5)):
        f = TONES[k % len(TONES)]
        out.extend(int(8000 * math.sin(2 * math.pi * f * i / 8000)) for i in range(1600))
    return out



def free_sip_port() -> int:
    """A loopback port free for baresip's SIP over UDP and TCP and its TLS on the next port:
    baresip opens all three whatever the account's transport, and fails to start on any taken."""
    for _ in range(100):
        port = free_udp_port()
        try:
            for p in (port, port + 1):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind((LOOPBACK, p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free SIP port for baresip")


def self_signed(tmp_path: Path, dns_names: tuple[str, ...] = ()) -> tuple[str, str]:
    """A throwaway certificate for 127.0.0.1 and ``dns_names`` (and its key) as one PEM, and the
    same certificate alone as the CA file a client trusts."""
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
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                                                        *(x509.DNSName(n) for n in dns_names)]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    (tmp_path / "peer.pem").write_bytes(cert_pem + key_pem)
    (tmp_path / "ca.pem").write_bytes(cert_pem)
    return str(tmp_path / "peer.pem"), str(tmp_path / "ca.pem")


@dataclass
class Baresip:
    """A running baresip: ``trunk`` reaches it over its transport (TLS on the SIP port + 1);
    ``ca_file`` is the CA its TLS certificate chains to; ``heard()`` is what it received."""

    proc: subprocess.Popen
    port: int
    trunk: TrunkConfig
    ca_file: str | None
    dumps: Path
    out: Path

    def heard(self) -> list[Path]:
        """The WAV files of the audio it received and decoded, one per call (sndfile's dumps)."""
        return sorted(self.dumps.glob("*-dec.wav"))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.out.read_text(errors="replace")


def start_baresip(tmp_path: Path, transport: str = "udp", commands: tuple[str, ...] = (),
                  user: str = "1000", cert_names: tuple[str, ...] = (), mediaenc: str | None = None,
                  trust: str | None = None) -> Baresip:
    """Start baresip (auto-answer; ``commands`` run once it is ready, e.g. ``/dial sip:...``).
    It answers calls to ``user`` only (its account's AOR); over TLS its certificate names
    127.0.0.1 and ``cert_names``. ``mediaenc``: its media encryption (``srtp-mand``: SDES SRTP
    only, RTP/SAVP offered and a plain RTP offer refused). ``trust``: a CA file it verifies the
    TLS servers it calls with (ours, when it calls in over TLS)."""
    if shutil.which("baresip") is None:
        import pytest

        pytest.skip("baresip is not installed")
    port = free_sip_port()
    rtp_lo = free_udp_port(even=True)
    prompt = tmp_path / "prompt.wav"
    with wave.open(str(prompt), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone_sequence(12).tobytes())
    cfg = tmp_path / "baresip"
    cfg.mkdir(exist_ok=True)
    cert, ca = self_signed(tmp_path, cert_names) if transport == "tls" else (None, None)
    (cfg / "config").write_text(
        # net_interface: its SDP must name the loopback it sends RTP from (the carrier
        # accepts RTP only from the address the SDP answer names)
        f"poll_method epoll\nnet_interface {LOOPBACK}\nsip_listen {LOOPBACK}:{port}\nsip_trans_def udp\n"
        f"audio_source aufile,{prompt}\naudio_alert aufile,{prompt}\naudio_player aufile,{tmp_path / 'x.wav'}\n"
        "module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule_app account.so\n"
        + ("module_app menu.so\n" if commands else "")  # /dial and the other commands
        # sndfile dumps each call's decoded (received) and encoded (sent) audio as WAV files
        + f"module sndfile.so\nsnd_path {tmp_path}\n"
        + f"rtp_ports {rtp_lo}-{rtp_lo + 20}\n" + (f"sip_certificate {cert}\n" if cert else "")
        + ("module srtp.so\n" if mediaenc else "") + (f"sip_cafile {trust}\n" if trust else "")
    )
    (cfg / "accounts").write_text(f"<sip:{user}@{LOOPBACK}>;regint=0;answermode=auto;audio_codecs=PCMU"
                                  + (f";mediaenc={mediaenc}" if mediaenc else "") + "\n")
    out = tmp_path / "baresip.out"
    args = ["baresip", "-f", str(cfg)]
    for c in commands:
        args += ["-e", c]
    proc = subprocess.Popen(args, stdout=open(out, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while b"baresip is ready" not in out.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    trunk = TrunkConfig(LOOPBACK, port + 1 if transport == "tls" else port, transport=transport)
    return Baresip(proc, port, trunk, ca, tmp_path, out)
