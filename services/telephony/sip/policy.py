"""What a SIP call accepts from its trunk: the digest challenges it answers and the hops
its in-dialog requests may go to (docs/security.md, "SIP signalling and media").

The defaults are strict; a trunk that needs more must be configured for it explicitly.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TrunkPolicy:
    """``realm``: the only realm whose challenges are answered; None: the first realm the
    trunk's own address challenged this call with. ``allow_legacy_digest``: answer a
    challenge without ``qop`` (RFC 2069 digest, whose answer is a plain hash of the
    password for the challenger's nonce). ``allow_foreign_hops``: follow a Record-Route
    or Contact that leaves the trunk's addresses."""

    realm: str | None = None
    allow_legacy_digest: bool = False
    allow_foreign_hops: bool = False


STRICT = TrunkPolicy()


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
