"""A real DNS server for the SIP server-location tests: dnsmasq (Debian's dnsmasq-base) on a
free loopback port, answering only the records a test gives it (NXDOMAIN for any other name
under ``.test``), restartable with new records on the same port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"


def free_dns_port() -> int:
    """A loopback port free for both UDP and TCP (dnsmasq binds both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((LOOPBACK, 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((LOOPBACK, port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


class Dnsmasq:
    """``start(srv=[(name, target, port, priority, weight)], hosts=[(name, ip)],
    naptr=[(name, order, preference, flags, service, replacement)], ttl=s)``."""

    def __init__(self, workdir: Path) -> None:
        if shutil.which("dnsmasq") is None:
            pytest.skip("dnsmasq (Debian package dnsmasq-base) is not installed")
        self.workdir, self.port = workdir, free_dns_port()
        self.proc: subprocess.Popen | None = None

    @property
    def nameserver(self) -> str:
        """The value of CANARY_DNS_NAMESERVERS that points at this server."""
        return f"{LOOPBACK}:{self.port}"

    def start(self, *, srv=(), hosts=(), naptr=(), ttl: int = 60) -> None:
        self.stop()
        user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        group = subprocess.run(["id", "-gn"], capture_output=True, text=True).stdout.strip()
        args = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
                f"--port={self.port}", f"--listen-address={LOOPBACK}", "--bind-interfaces",
                f"--pid-file={self.workdir / 'dnsmasq.pid'}", f"--user={user}", f"--group={group}",
                "--local=/test/", f"--local-ttl={ttl}", "--log-queries", "--log-facility=-"]
        args += [f"--srv-host={n},{t},{p},{prio},{w}" for n, t, p, prio, w in srv]
        args += [f"--host-record={n},{ip}" for n, ip in hosts]
        args += [f"--naptr-record={n},{o},{pref},{f},{s},,{r}" for n, o, pref, f, s, r in naptr]
        self.log = open(self.workdir / "dnsmasq.log", "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        import dns.message
        import dns.query

        deadline = time.monotonic() + 5
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                dns.query.udp(dns.message.make_query("ready.test", "A"), LOOPBACK, timeout=0.2, port=self.port)
                return
            except Exception:  # noqa: BLE001 - not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def log_text(self) -> str:
        path = self.workdir / "dnsmasq.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def queries(self) -> int:
        """How many queries it has been asked so far."""
        return self.log_text().count(": query[")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def dnsmasq(tmp_path, monkeypatch):
    """A dnsmasq the resolver of this process asks (CANARY_DNS_NAMESERVERS); call ``start``."""
    server = Dnsmasq(tmp_path)
    monkeypatch.setenv("CANARY_DNS_NAMESERVERS", server.nameserver)
    monkeypatch.setenv("CANARY_DNS_TIMEOUT_S", os.environ.get("CANARY_DNS_TIMEOUT_S", "2"))
    yield server
    server.stop()
