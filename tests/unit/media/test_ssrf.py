"""services.common.ssrf: address classification, URL checks, connect-time guard.

No test sends traffic anywhere but 127.0.0.1: forbidden targets are rejected
before any connection is attempted.
"""

import socket

import httpx
import pytest

from services.common import ssrf


@pytest.mark.parametrize("ip", [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.0.1",
    "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.251", "239.255.255.250", "240.0.0.1",
    "255.255.255.255", "192.0.2.1", "198.18.0.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
    "64:ff9b::a00:1", "2002:c0a8:101::1", "2001:db8::1",
])
def test_forbidden_addresses(ip):
    assert ssrf.is_forbidden_ip(ip)


@pytest.mark.parametrize("ip", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(ip):
    assert not ssrf.is_forbidden_ip(ip)


@pytest.mark.parametrize("url,fragment", [
    ("ftp://example.com/a.mp3", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://example.com/", "scheme"),
    ("http:///nohost", "host"),
    ("https://user:pw@example.com/a.mp3", "credentials"),
    ("http://127.0.0.1/a.mp3", "not allowed"),
    ("http://[::1]:8080/", "not allowed"),
    ("http://169.254.169.254/latest/meta-data/", "not allowed"),
])
def test_check_url_rejects(url, fragment, monkeypatch):
    monkeypatch.delenv("CANARY_ALLOW_PRIVATE_URLS", raising=False)
    with pytest.raises(ssrf.SsrfError, match=fragment):
        ssrf.check_url(url)


def test_check_url_accepts_public_names():
    assert ssrf.check_url("https://example.com/prompt.mp3").host == "example.com"


@pytest.mark.asyncio
async def test_name_resolving_to_loopback_is_refused_at_connect(monkeypatch, http_server):
    monkeypatch.delenv("CANARY_ALLOW_PRIVATE_URLS", raising=False)
    http_server.routes["/x"] = (200, {}, b"secret")
    port = http_server.server_address[1]
    async with ssrf.guarded_async_client() as client:
        with pytest.raises(ssrf.SsrfError, match="non-public"):
            await client.get(f"http://localhost:{port}/x")


@pytest.mark.asyncio
async def test_dns_rebinding_is_checked_on_every_connection(monkeypatch):
    """The name passes a first look-up but resolves to a private address at connect time."""
    monkeypatch.delenv("CANARY_ALLOW_PRIVATE_URLS", raising=False)
    import asyncio

    loop = asyncio.get_running_loop()

    async def fake_getaddrinfo(host, port, **kw):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]

    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    ssrf.check_url("http://rebind.example/a.mp3")  # syntax check alone cannot know
    async with ssrf.guarded_async_client() as client:
        with pytest.raises(ssrf.SsrfError, match="10.0.0.7"):
            await client.get("http://rebind.example/a.mp3")


@pytest.mark.asyncio
async def test_redirect_to_forbidden_address_is_refused(monkeypatch, http_server):
    # Treat 127.0.0.1 as "public" for this test and 127.0.0.2 as internal, so the
    # first hop succeeds locally and the redirect hop must be stopped by the guard.
    monkeypatch.delenv("CANARY_ALLOW_PRIVATE_URLS", raising=False)
    real = ssrf.is_forbidden_ip
    monkeypatch.setattr(ssrf, "is_forbidden_ip", lambda ip: str(ip) != "127.0.0.1" and real(ip))
    http_server.routes["/go"] = (302, {"Location": "http://127.0.0.2:9/internal"}, b"")
    async with ssrf.guarded_async_client() as client:
        with pytest.raises(ssrf.SsrfError, match="127.0.0.2"):
            await client.get(http_server.base + "/go")


@pytest.mark.asyncio
async def test_opt_out_allows_local_targets(monkeypatch, http_server):
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")
    http_server.routes["/ok"] = (200, {}, b"fine")
    ssrf.check_url(http_server.base + "/ok")
    async with ssrf.guarded_async_client() as client:
        resp = await client.get(http_server.base + "/ok")
    assert resp.status_code == 200 and resp.content == b"fine"


@pytest.mark.asyncio
async def test_environment_proxy_is_ignored(monkeypatch, http_server):
    # A proxy would resolve the name itself, bypassing the guard.
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    http_server.routes["/p"] = (200, {}, b"direct")
    async with ssrf.guarded_async_client() as client:
        assert (await client.get(http_server.base + "/p")).content == b"direct"
    assert isinstance(httpx.URL(http_server.base), httpx.URL)
