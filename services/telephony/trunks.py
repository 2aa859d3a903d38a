"""Dialling through an account's SIP trunk: the stored trunk (services/lib/trunks.py)
as the carrier's TrunkConfig, and the caller id its rules allow. Only the gateway
unseals the password, here, to answer a digest challenge.

The trunk's host is resolved here, once per call, under the SSRF rules of customer URLs
(services/common/ssrf.py: any loopback, private, link-local ... answer refuses the call;
CANARY_ALLOW_PRIVATE_URLS=1 allows them in development), and the SIP goes to the vetted
address, so a name that changes its answer after the trunk was set (DNS rebinding)
cannot point the gateway, and the trunk password's digest, at our own network.

A trunk without a port is located by DNS (RFC 3263: NAPTR, SRV, then A; sip/locate.py),
each address found vetted the same way; the carrier fails over along them in order."""

from __future__ import annotations

import dataclasses
from typing import Any

from services.common.ssrf import SsrfError, resolve_checked
from services.lib.trunks import NO_TRUNK, TrunkError, default_port, resolve_caller_id, unseal
from services.telephony.carrier import DialRequest, TrunkConfig
from services.telephony.sip.locate import LocateError, Target, locate
from services.telephony.sip.policy import TrunkPolicy, is_ip


async def trunk_config(db: Any, account_id: str) -> tuple[TrunkConfig, list[str]] | None:
    """The account's trunk for dialling (password unsealed) and its allowed from prefixes."""
    row = await db.fetchrow(
        "SELECT host, port, transport, username, password_sealed, caller_id, allowed_from_prefixes,"
        " digest_realm, allow_legacy_digest, allow_foreign_hops, srtp FROM sip_trunks WHERE account_id = $1",
        account_id)
    if row is None:
        return None
    pw = unseal(row["password_sealed"]) if row["password_sealed"] is not None else None
    policy = TrunkPolicy(realm=row.get("digest_realm"), allow_legacy_digest=bool(row.get("allow_legacy_digest")),
                         allow_foreign_hops=bool(row.get("allow_foreign_hops")))
    return (TrunkConfig(host=row["host"], port=row["port"], transport=row["transport"], username=row["username"],
                        password=pw, caller_id=row["caller_id"], policy=policy, srtp=row.get("srtp") or "off"),
            list(row["allowed_from_prefixes"] or []))


async def vetted_address(host: str, port: int) -> str:
    """The address to send a trunk's SIP to, or TrunkError ``host_not_allowed``."""
    try:
        addrs = await resolve_checked(host, port)
    except SsrfError as exc:
        raise TrunkError("host_not_allowed", f"SIP trunk refused: {exc}", "host") from None
    v4 = [a for a in addrs if ":" not in a]  # the SIP socket is IPv4
    return (v4 or addrs)[0]


async def prepare_dial(db: Any, req: DialRequest) -> DialRequest:
    """``req`` with the account's trunk and the caller id its rules allow; TrunkError (message
    fit for call.failed's reason) when there is no trunk or the caller id is refused."""
    found = await trunk_config(db, req.account_id)
    if found is None:
        raise TrunkError("trunk_not_found", NO_TRUNK)
    trunk, prefixes = found
    from_ = resolve_caller_id(req.from_, trunk.caller_id, prefixes)
    targets = await trunk_targets(trunk)
    # The resolved number goes in `from_`; the carrier's own override is not needed again.
    return dataclasses.replace(req, from_=from_, trunk=dataclasses.replace(
        trunk, caller_id=None, address=targets[0].address, targets=tuple(targets)))


async def trunk_targets(trunk: TrunkConfig) -> list[Target]:
    """Where a call through ``trunk`` sends its SIP, in the order to try: its vetted address
    when it has a port or is an IP address, else the servers DNS locates for its domain;
    TrunkError (``host_not_allowed``, ``host_not_found``, ``dns_failed``) otherwise."""
    if trunk.port is not None or is_ip(trunk.host):
        port = trunk.port or default_port(trunk.transport)
        return [Target(await vetted_address(trunk.host, port), port, trunk.host)]
    try:
        return await locate(trunk.host, trunk.transport)
    except LocateError as exc:
        raise TrunkError(exc.code, exc.message, "host") from None
