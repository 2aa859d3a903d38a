"""Locating a SIP trunk's servers by DNS (RFC 3263 4.1-4.2) when its port is not given.

NAPTR of the domain, then SRV, then A (AAAA when there is no A) of each SRV target; with
no SRV, the domain's own A with the transport's default port. The trunk's transport is
always its own setting: NAPTR may only name the SRV record to use for it (its ``SIP+D2U``,
``SIP+D2T`` or ``SIPS+D2T`` record), never switch it, so an unauthenticated DNS answer
cannot turn a TLS trunk into a UDP one. Without a NAPTR for the transport the standard
SRV name (``_sip._udp``, ``_sip._tcp``, ``_sips._tcp`` + domain) is asked.

Every address found is vetted by the SSRF rules (services/common/ssrf.py): one forbidden
answer refuses the trunk, as for a trunk host resolved directly. Callers connect to the
returned literals, never to a name resolved again. TLS still verifies the certificate
against the trunk's domain, not an SRV target (RFC 5922: the target is not authenticated).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple

from services.common import dnslookup
from services.common.config import settings
from services.common.ssrf import SsrfError, vet_addresses

SERVICES = {"udp": ("SIP+D2U", "_sip._udp"), "tcp": ("SIP+D2T", "_sip._tcp"), "tls": ("SIPS+D2T", "_sips._tcp")}
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
MAX_TARGETS = 8  # a zone listing more than this is not failed over to the end


class Naptr(NamedTuple):
    order: int
    preference: int
    flags: str
    service: str
    replacement: str


class Srv(NamedTuple):
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Target:
    """One place to send the trunk's SIP: a vetted address, its port, and the name it came from."""

    address: str
    port: int
    name: str

    def __str__(self) -> str:
        where = f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"
        return where if self.name == self.address else f"{self.name} ({where})"


class LocateError(Exception):
    """No server could be located; ``code`` is machine readable, the message fit for call.failed."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def srv_names(naptrs: Iterable[Naptr], transport: str) -> list[str]:
    """The SRV names the NAPTR records give ``transport``, best first (RFC 3403 order, then
    preference); only terminal ``s`` records count (RFC 3263 4.1)."""
    service = SERVICES[transport][0]
    fit = [n for n in naptrs if n.flags.lower() == "s" and n.service.upper() == service and n.replacement]
    return [n.replacement for n in sorted(fit, key=lambda n: (n.order, n.preference))]


def order_srv(records: Iterable[Srv], rng: random.Random) -> list[Srv]:
    """``records`` in the order to try them (RFC 2782): by priority, and within a priority by
    weighted random selection (zero weights first in the running sum, so they are picked
    rarely but can be)."""
    records = list(records)
    out: list[Srv] = []
    for prio in sorted({r.priority for r in records}):
        group = sorted((r for r in records if r.priority == prio), key=lambda r: r.weight != 0)
        while group:
            pick = rng.randint(0, sum(r.weight for r in group))
            running = 0
            for i, r in enumerate(group):
                running += r.weight
                if running >= pick:
                    out.append(group.pop(i))
                    break
    return out


def _name(value: Any) -> str:
    return str(value).rstrip(".").lower()


async def _query(name: str, rdtype: str) -> list[Any]:
    try:
        return await dnslookup.query(name, rdtype)
    except dnslookup.NxDomain:
        return []


async def _addresses(name: str) -> list[str]:
    found = await _query(name, "A") or await _query(name, "AAAA")
    return [r.address for r in found]


async def _targets(name: str, port: int) -> list[Target]:
    addrs = await _addresses(name)
    if not addrs:
        return []
    try:
        vetted = vet_addresses(name, addrs)
    except SsrfError as exc:
        raise LocateError("host_not_allowed", f"SIP trunk refused: {exc}") from None
    return [Target(a, port, name) for a in vetted]


async def _locate(host: str, transport: str, rng: random.Random) -> list[Target]:
    try:
        naptrs = await dnslookup.query(host, "NAPTR")
    except dnslookup.NxDomain:
        raise LocateError("host_not_found", f"SIP trunk host {host} does not exist in DNS (NXDOMAIN)") from None
    names = srv_names((Naptr(r.order, r.preference, r.flags.decode(), r.service.decode(), _name(r.replacement))
                       for r in naptrs), transport) or [f"{SERVICES[transport][1]}.{host}"]
    for srv_name in names:
        records = [Srv(r.priority, r.weight, r.port, _name(r.target)) for r in await _query(srv_name, "SRV")]
        if not records:
            continue
        if len(records) == 1 and records[0].target in ("", "."):
            raise LocateError("host_not_found", f"SIP trunk host {host}: {srv_name} says there is no such service")
        out: list[Target] = []
        for r in order_srv(records, rng):
            out += await _targets(r.target, r.port)
            if len(out) >= MAX_TARGETS:
                break
        if not out:
            raise LocateError("host_not_found", f"SIP trunk host {host}: the targets of {srv_name} have no address")
        return out[:MAX_TARGETS]
    out = await _targets(host, DEFAULT_PORTS[transport])
    if not out:
        raise LocateError("host_not_found", f"SIP trunk host {host} has no NAPTR, SRV or A/AAAA record")
    return out[:MAX_TARGETS]


async def locate(host: str, transport: str, *, rng: random.Random | None = None) -> list[Target]:
    """Where to send SIP for a trunk ``host`` (a domain name) without a port, in the order to
    try; LocateError when DNS has no server for it, a lookup fails or times out (all of it
    within ``CANARY_DNS_TIMEOUT_S``), or an answer is forbidden by the SSRF rules."""
    timeout = settings().dns_timeout_s
    try:
        async with asyncio.timeout(timeout):
            return await _locate(host.rstrip(".").lower(), transport, rng or random.Random())
    except TimeoutError:
        raise LocateError("dns_failed", f"DNS lookup for SIP trunk host {host} timed out after {timeout:g} s") from None
    except dnslookup.DnsError as exc:
        raise LocateError("dns_failed", f"SIP trunk host {host}: {exc}") from None
