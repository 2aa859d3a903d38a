"""Where the gateway's incoming SIP calls go: a cached :class:`services.lib.inbound.Directory`.

An INVITE is routed from memory: the trunks' source addresses and their accounts' routable
numbers, loaded in two queries. A refusal (403 unknown source, 404 unknown number) reloads
the snapshot first, at most once per ``refresh_s`` whatever the INVITE rate, so a number
set up a moment ago answers and a flood of INVITEs to numbers nobody has costs no query;
the snapshot is reloaded anyway once it is ``max_age_s`` old (a removed number stops
answering). Trunk host names are resolved under the SSRF rules, as for dialling.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from services.lib.inbound import Accept, Directory, Reject, route, routable_numbers
from services.telephony.sip.policy import is_ip

log = structlog.get_logger(__name__)
RESOLVE_TIMEOUT_S = 2.0
RESOLVED_TTL_S = 60.0  # a trunk's name is resolved again after this long


class DirectoryCache:
    """The gateway's routing of incoming INVITEs (``route`` is the SIP carrier's router)."""

    def __init__(self, pool: Any, *, refresh_s: float = 1.0, max_age_s: float = 30.0) -> None:
        self.pool = pool
        self.refresh_s = refresh_s
        self.max_age_s = max_age_s
        self.directory: Directory | None = None
        self.loaded_at = 0.0
        self.loads = 0  # snapshots loaded so far (what routing has cost Postgres)
        self._lock = asyncio.Lock()
        self._resolved: dict[tuple[str, bool], tuple[float, list[str]]] = {}  # (host, located) -> (when, addresses)

    async def route(self, source_ip: str, number: str | None) -> Accept | Reject:
        """Accept (the number's route) or Reject (the SIP code) for an INVITE from ``source_ip``."""
        now = time.monotonic()
        if self.directory is None or now - self.loaded_at > self.max_age_s:
            await self._load(now)
        decision = route(self.directory, source_ip, number)  # type: ignore[arg-type]
        if isinstance(decision, Reject) and now - self.loaded_at >= self.refresh_s:
            await self._load(now)
            decision = route(self.directory, source_ip, number)  # type: ignore[arg-type]
        return decision

    async def _load(self, asked_at: float) -> None:
        async with self._lock:
            if self.directory is not None and self.loaded_at >= asked_at:
                return  # loaded while this one waited: one query for the whole burst
            rows = await self.pool.fetch("SELECT account_id, host, port IS NULL AS located, srtp FROM sip_trunks")
            keys = sorted({(r["host"], r["located"]) for r in rows})
            found = dict(zip(keys, await asyncio.gather(*(self._addresses(*k) for k in keys))))
            ips: dict[str, list[str]] = {}
            for r in rows:
                ips.setdefault(r["account_id"], []).extend(found[(r["host"], r["located"])])
            routes = await routable_numbers(self.pool, list(ips))
            self.directory = Directory.build(ips, routes, {r["account_id"]: r["srtp"] for r in rows})
            self.loaded_at = time.monotonic()
            self.loads += 1

    async def _addresses(self, host: str, located: bool = False) -> list[str]:
        """The addresses a trunk's INVITEs may come from: its host's, or for a trunk without a
        port the servers DNS locates for it (its SRV targets call us too)."""
        if is_ip(host):
            return [host]
        from services.common.ssrf import resolve_checked
        from services.telephony.sip.locate import locate

        cached = self._resolved.get((host, located))
        if cached is not None and time.monotonic() - cached[0] < RESOLVED_TTL_S:
            return cached[1]
        try:
            if located:
                addresses = [t.address for t in await asyncio.wait_for(locate(host, "udp"), RESOLVE_TIMEOUT_S)]
            else:
                addresses = await asyncio.wait_for(resolve_checked(host, 5060), RESOLVE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a trunk whose name does not resolve takes no calls
            log.info("sip.inbound_trunk_unresolved", host=host, error=str(exc) or type(exc).__name__)
            addresses = []
        self._resolved[(host, located)] = (time.monotonic(), addresses)
        return addresses
