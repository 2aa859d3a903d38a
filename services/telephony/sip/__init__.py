"""SIP/RTP carrier: a focused SIP UAC (RFC 3261 over UDP) with G.711 RTP media.

Modules: message (parse/serialize), transaction (client transactions and timers),
transport (UDP endpoint), call (dialog / CallSession), sdp, rtp, rtcp, jitter, dtmf,
digest (auth), g711, mapping (final response -> status), media, carrier.
"""

from .carrier import SipCarrier

__all__ = ["SipCarrier"]
