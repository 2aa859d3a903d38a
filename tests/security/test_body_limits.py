"""Bodies are capped while they stream, never buffered whole first.

Before: POST /v1/voice/flows read the whole request (`request.body()`) and only then
checked its size (a 300 MiB chunked POST took the API from 67 to 665 MiB before its
413), and the webhook sender and the flow step read a receiver's whole response (a
400 MiB answer cost 400-800 MiB). Now every request body is read as it arrives and
refused (413) at the first chunk over its limit, and of a receiver's response at most
64 KiB are read, then the connection is dropped unread."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import httpx
import orjson
import pytest

from events import new_envelope
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
CHUNK = b"x" * (64 * 1024)
BIG = 50 * MiB  # what a client sends (chunked, no Content-Length)
GROWTH = 20 * MiB  # the most memory a refused body or an endless answer may cost


class Chunked:
    """An async request body of ``total`` bytes in 64 KiB chunks (no Content-Length: chunked);
    ``sent`` counts what the server pulled."""

    def __init__(self, total: int, head: bytes = b"") -> None:
        self.total, self.head, self.sent = total, head, 0

    async def __aiter__(self):
        if self.head:
            self.sent += len(self.head)
            yield self.head
        while self.sent < self.total:
            self.sent += len(CHUNK)
            yield CHUNK


def traced_peak():
    tracemalloc.start()
    tracemalloc.reset_peak()
    return lambda: (tracemalloc.get_traced_memory()[1], tracemalloc.stop())[0]


async def test_every_body_route_refuses_a_big_chunked_body_as_it_streams(api, acct):
    routes = [("POST", "/v1/voice/flows", acct.test, 512 * 1024), ("PUT", "/v1/voice/flows/flw_x", acct.test, 512 * 1024),
              ("POST", "/v1/voice/calls", acct.test, 128 * 1024), ("PUT", "/v1/voice/trunk", acct.live, 16 * 1024),
              ("POST", "/v1/voice/numbers", acct.test, 4096), ("POST", "/v1/voice/sandbox/callees", acct.test, 16 * 1024)]
    for method, path, headers, limit in routes:
        body = Chunked(BIG, b'{"steps": "')
        peak = traced_peak()
        r = await api.request(method, path, headers={**headers, "Content-Type": "application/json"}, content=body)
        grew = peak()
        assert r.status_code == 413, (path, r.status_code, r.text[:200])
        assert body.sent <= limit + 2 * len(CHUNK), (path, body.sent)  # stopped reading at the limit
        assert grew < GROWTH, (path, grew // MiB)
        assert r.json() == {"error": {"code": "payload_too_large", "message": r.json()["error"]["message"],
                                      "field": None}}, r.text
        # a declared Content-Length over the limit: refused before a byte is read
        r = await api.request(method, path, headers={**headers, "Content-Type": "application/json",
                                                     "Content-Length": str(BIG)}, content=Chunked(0))
        assert r.status_code == 413, (path, r.text)
    # within the limit a flow body is still read and judged
    r = await api.post("/v1/voice/flows", headers=acct.test, content=b"{")
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


async def test_a_real_server_refuses_a_50_MiB_chunked_flow_without_growing(acct, prefix, tmp_path):
    """The API as it runs (uvicorn, `python -m services.api`), a real chunked upload, and the
    server's peak resident memory (VmHWM, reset just before) against its resident size."""
    port = _free_port()
    env = {**os.environ, "CANARY_API_PORT": str(port), "CANARY_API_HOST": "127.0.0.1", "CANARY_TOPIC_PREFIX": prefix,
           "CANARY_API_WORKERS": "1", "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "api.log"
    proc = subprocess.Popen([sys.executable, "-m", "services.api"], cwd=ROOT, env=env, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            end = time.monotonic() + 60
            while True:
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None and time.monotonic() < end, log.read_text()[-3000:]
                await asyncio.sleep(0.2)
            h = {**acct.test, "Content-Type": "application/json"}
            ok = {"steps": {"main": {"kind": "hangup"}}, "start": "main"}
            await client.post("/v1/voice/flows", headers=h, content=orjson.dumps(ok))  # warm the route up
            base = _status(proc.pid, "VmRSS")
            try:
                Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            except OSError:
                pytest.skip("cannot reset the peak RSS of a process here")
            body = Chunked(BIG, b'{"steps": "')
            r = await client.post("/v1/voice/flows", headers=h, content=body)
            peak = _status(proc.pid, "VmHWM")
        assert r.status_code == 413, r.text[:300]
        assert peak - base < GROWTH, f"the API grew by {(peak - base) / MiB:.0f} MiB for a refused body"
        assert r.json()["error"]["code"] == "payload_too_large", r.text[:300]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


class EndlessReceiver:
    """A webhook receiver that answers with a response that does not end (here: until the
    client hangs up, or SAFETY bytes, so a client that does read everything cannot take
    the test machine down). ``sent`` counts the body bytes it managed to write."""

    SAFETY = 192 * MiB

    def __init__(self, status: int = 200, framing: str = "chunked") -> None:
        self.status, self.framing, self.sent, self.closed = status, framing, 0, asyncio.Event()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            framing = {"chunked": b"Transfer-Encoding: chunked\r\n", "close": b"Connection: close\r\n",
                       "declared": b"Content-Length: %d\r\n" % (400 * MiB)}[self.framing]
            writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n%s\r\n" % (self.status, framing))
            piece = (b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK)) if self.framing == "chunked" else CHUNK
            while self.sent < self.SAFETY:
                writer.write(piece)
                await writer.drain()
                self.sent += len(CHUNK)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed.set()
            writer.close()


@pytest.fixture
def private_ok(monkeypatch):
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")  # the receiver is on loopback


@pytest.mark.parametrize("framing", ["chunked", "close", "declared"])
async def test_the_webhook_sender_stops_reading_an_endless_response(private_ok, framing):
    from services.webhooks import sender

    body = b'{"call_id": "call_x", "type": "call.completed"}'
    async with EndlessReceiver(framing=framing) as rx:
        client = sender.make_client(4)
        try:
            peak = traced_peak()
            t0 = time.monotonic()
            res = await sender.post(client, rx.url, body, sender.headers_for("whsec_x", body, "e1", "call.completed", 1),
                                    timeout=8.0)
            took, grew = time.monotonic() - t0, peak()
            await asyncio.wait_for(rx.closed.wait(), 10)  # we hung up: the receiver's writes failed
        finally:
            await client.aclose()
    assert res.ok and res.status_code == 200 and res.error is None, res  # the status is the answer
    assert took < 5.0, took
    assert grew < GROWTH, grew // MiB
    assert rx.sent < 32 * MiB, rx.sent // MiB  # it was not read to the end (socket buffers aside)

    async with EndlessReceiver(status=500) as rx:
        client = sender.make_client(4)
        try:
            res = await sender.post(client, rx.url, body, {}, timeout=8.0)
        finally:
            await client.aclose()
    assert not res.ok and res.status_code == 500 and res.error == "HTTP 500"


async def test_a_flow_step_answer_is_read_up_to_its_limit_only(private_ok):
    from services.common.ssrf import guarded_async_client
    from services.webhooks.flow_step import ask_app

    for framing in ("chunked", "close", "declared"):
        async with EndlessReceiver(framing=framing) as rx:
            req = new_envelope("flow.webhook.requested", "call_x", "acct_x", {"url": rx.url, "step": "billing"})
            async with guarded_async_client() as client:
                peak = traced_peak()
                t0 = time.monotonic()
                out = await ask_app(client, "whsec_x", req)
                took, grew = time.monotonic() - t0, peak()
            await asyncio.wait_for(rx.closed.wait(), 10)
        assert out.type == "flow.webhook.failed" and out.data["reason"] == "answer larger than 64 KiB", out.data
        assert took < 5.0 and grew < GROWTH and rx.sent < 32 * MiB, (framing, took, grew // MiB, rx.sent // MiB)

    # a normal answer still works
    async def app(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"steps": [{"kind": "say", "text": "Your balance is 5 dollars."}]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(app)) as client:
        req = new_envelope("flow.webhook.requested", "call_x", "acct_x",
                           {"url": "https://app.example.com/ivr", "step": "billing"})
        out = await ask_app(client, "whsec_x", req)
    assert out.type == "flow.webhook.answered" and out.data["steps"][0]["kind"] == "say", out.data
