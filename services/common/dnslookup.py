"""DNS queries for what the system resolver cannot answer (NAPTR, SRV: SIP server location,
RFC 3263), through dnspython's asyncio resolver so a slow server never blocks the event loop.

The servers are ``CANARY_DNS_NAMESERVERS`` (default: the system's resolv.conf). Answers are
cached for their TTL in a bounded LRU cache (``CANARY_DNS_CACHE_SIZE``): a trunk's records are
looked up on every call, and most calls then need no query at all. The answers say nothing
about whether an address may be reached: callers vet them (services/common/ssrf.py).
"""

from __future__ import annotations

from typing import Any

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from services.common.config import settings


class DnsError(Exception):
    """A query that got no usable answer (timeout, server failure, no server): unlike an
    empty answer, it says nothing about whether the records exist."""


class NxDomain(LookupError):
    """The name does not exist (NXDOMAIN)."""


_resolver: tuple[tuple[Any, ...], dns.asyncresolver.Resolver] | None = None


def resolver() -> dns.asyncresolver.Resolver:
    """The process's resolver, made anew when its settings change (tests change them)."""
    global _resolver
    s = settings()
    key = (s.dns_nameservers, s.dns_timeout_s, s.dns_cache_size)
    if _resolver is None or _resolver[0] != key:
        try:
            r = dns.asyncresolver.Resolver(configure=not s.dns_nameservers)
        except dns.resolver.NoResolverConfiguration as exc:
            raise DnsError(f"no DNS servers: {exc}") from None
        if s.dns_nameservers:
            r.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in s.dns_nameservers]
        r.lifetime = r.timeout = s.dns_timeout_s
        r.cache = dns.resolver.LRUCache(max(1, s.dns_cache_size))
        _resolver = (key, r)
    return _resolver[1]


async def query(name: str, rdtype: str) -> list[Any]:
    """The ``rdtype`` records of ``name`` (dnspython rdata); [] when it has none. NxDomain when
    the name does not exist, DnsError when the servers did not answer."""
    try:
        answer = await resolver().resolve(name, rdtype, search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        raise NxDomain(name) from None
    except dns.exception.Timeout:
        raise DnsError(f"DNS {rdtype} query for {name} timed out") from None
    except dns.resolver.NoNameservers as exc:
        raise DnsError(f"DNS {rdtype} query for {name} failed: no server answered ({exc})") from None
    except dns.exception.DNSException as exc:
        raise DnsError(f"DNS {rdtype} query for {name} failed: {exc}") from None
    return list(answer.rrset) if answer.rrset is not None else []
