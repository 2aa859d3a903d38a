"""SSRF guard for URLs supplied by API clients (``audio_url``, ``webhook_url``).

A customer-supplied URL must never make us talk to our own network: loopback,
RFC 1918 private ranges, link-local (cloud metadata at 169.254.169.254),
CGNAT, multicast, reserved or unspecified addresses.

Checking the URL's host once before the request is not enough: DNS can answer
differently a moment later ("DNS rebinding"), and redirects can point anywhere.
So the check lives in the *connection* layer: :class:`GuardedNetworkBackend`
resolves the host itself, rejects the connection if any answer is forbidden,
and connects to the vetted IP literal. TLS still verifies against the original
host name because httpcore takes SNI / certificate names from the URL, not from
the socket. Every redirect hop goes through the same backend.

Set ``CANARY_ALLOW_PRIVATE_URLS=1`` to allow private targets (local
development and tests against 127.0.0.1 only).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any, Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

from services.common.config import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges Python's ``is_global`` does not flag on every 3.11 patch release, or
# that translate to IPv4 and must be judged by the embedded address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class SsrfError(ValueError):
    """The URL or one of its resolved addresses is not allowed."""


def private_urls_allowed() -> bool:
    """Whether the operator opted out of the guard (CANARY_ALLOW_PRIVATE_URLS=1)."""
    return settings().allow_private_urls


def is_forbidden_ip(ip: str | IPAddress) -> bool:
    """True if ``ip`` is not a public unicast address."""
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if isinstance(addr, ipaddress.IPv6Address):
        # ::ffff:127.0.0.1 and 64:ff9b::a00:1 reach IPv4 hosts: judge those.
        if addr.ipv4_mapped is not None:
            return is_forbidden_ip(addr.ipv4_mapped)
        if addr in _NAT64:
            return is_forbidden_ip(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
        if addr.sixtofour is not None:
            return is_forbidden_ip(addr.sixtofour)
    return (
        not addr.is_global
        or addr.is_multicast
        or addr.is_loopback
        or addr.is_private
        or addr.is_link_local
        or addr.is_reserved
        or addr.is_unspecified
    )


def check_url(url: str) -> httpx.URL:
    """Validate URL syntax: http(s) only, a host, no embedded credentials.

    IP-literal hosts are checked here already; names are checked at connect
    time by :class:`GuardedNetworkBackend`.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise SsrfError(f"invalid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise SsrfError("URL scheme must be http or https")
    if not parts.hostname:
        raise SsrfError("URL has no host")
    if parts.username or parts.password:
        raise SsrfError("URL must not contain credentials")
    try:
        parsed = httpx.URL(url)
    except Exception as exc:  # httpx.InvalidURL and friends
        raise SsrfError(f"invalid URL: {exc}") from None
    host = parsed.host
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and is_forbidden_ip(literal) and not private_urls_allowed():
        raise SsrfError(f"address {host} is not allowed")
    return parsed


def check_ws_url(url: str) -> tuple[str, int]:
    """Validate a media stream's WebSocket URL; (host, port) to connect to.

    ``wss`` only, except in development (``CANARY_ENV=development``), where ``ws`` is
    allowed too, for a bot on the developer's machine (a loopback address also needs
    ``CANARY_ALLOW_PRIVATE_URLS=1``, as for every customer URL). A host, no credentials;
    IP literals are judged here, names when connecting (:func:`resolve_checked`).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SsrfError(f"invalid URL: {exc}") from None
    dev = settings().environment == "development"
    if parts.scheme not in (("wss", "ws") if dev else ("wss",)):
        raise SsrfError("URL scheme must be wss" + (" or ws" if dev else " (ws only in development)"))
    host = parts.hostname
    if not host:
        raise SsrfError("URL has no host")
    if parts.username or parts.password:
        raise SsrfError("URL must not contain credentials")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and is_forbidden_ip(literal) and not private_urls_allowed():
        raise SsrfError(f"address {host} is not allowed")
    return host, port or (443 if parts.scheme == "wss" else 80)


async def resolve_checked(host: str, port: int) -> list[str]:
    """Resolve ``host`` and return its addresses; raise if any is forbidden.

    Rejecting when *any* answer is private (not just the first) prevents a
    name that mixes public and private records from being used as a pivot.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SsrfError(f"cannot resolve {host}: {exc.strerror}") from None
    return vet_addresses(host, [info[4][0] for info in infos])


def vet_addresses(host: str, addrs: Iterable[str]) -> list[str]:
    """``addrs`` (what ``host`` resolved to, by any resolver), deduplicated; SsrfError if there
    are none or any is forbidden (unless CANARY_ALLOW_PRIVATE_URLS)."""
    addrs = list(dict.fromkeys(addrs))
    if not addrs:
        raise SsrfError(f"cannot resolve {host}")
    if not private_urls_allowed():
        bad = [a for a in addrs if is_forbidden_ip(a.split("%", 1)[0])]
        if bad:
            raise SsrfError(f"host {host} resolves to a non-public address ({bad[0]})")
    return addrs


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore backend that only opens TCP connections to vetted addresses."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addrs = await resolve_checked(host, port)
        last: Exception | None = None
        for addr in addrs:  # connect to the literal we vetted, never re-resolve
            try:
                return await self._inner.connect_tcp(
                    addr, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None):
        raise SsrfError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx transport whose connection pool uses :class:`GuardedNetworkBackend`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # httpx has no public hook for the network backend; the pool attribute
        # has been stable across httpx 0.2x and is covered by our tests.
        self._pool._network_backend = GuardedNetworkBackend()  # type: ignore[attr-defined]


def guarded_async_client(**kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that cannot reach non-public addresses.

    ``trust_env`` is off so an environment proxy cannot do the resolving for us
    (a proxy would connect to whatever the name points at).
    """
    kwargs.setdefault("follow_redirects", True)
    kwargs.setdefault("max_redirects", 3)
    return httpx.AsyncClient(transport=GuardedTransport(retries=0), trust_env=False, **kwargs)
