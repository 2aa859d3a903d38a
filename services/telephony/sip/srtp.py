"""SRTP with SDES keys (RFC 4568 a=crypto, RFC 3711): the key exchange and the packet transforms.

A call's keys cross in its SDP: each side offers or answers an ``a=crypto`` line naming a tag,
a suite and its own master key and salt (``inline:`` base64), and protects what it sends with
that key; the peer's line is the key of what it receives. libsrtp (pylibsrtp) does the
cryptography; this module only reads and writes the attribute and holds the two sessions.

Keys never reach a log: :class:`Crypto` and :class:`SrtpKeys` hide them from ``repr`` and the
errors here never quote a key.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pylibsrtp

if TYPE_CHECKING:
    from .sdp import SdpAnswer

MODES = ("off", "optional", "required")  # a trunk's `srtp` (docs/architecture.md "SRTP")
SAVP, AVP = "RTP/SAVP", "RTP/AVP"
# Ours, in order of preference; both use a 128-bit key and a 112-bit salt (30 bytes inline).
SUITES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
KEY_SALT_LEN = 30
# We never re-key within a call: a lifetime shorter than 2^31 packets (a year of 20 ms
# packets) could run out, so a line asking for one is not taken.
MIN_LIFETIME = 2 ** 31
_TAG = re.compile(r"[0-9]{1,9}")


class CryptoError(ValueError):
    """An ``a=crypto`` line we cannot use (the message never contains key material)."""


@dataclass(frozen=True, slots=True)
class Crypto:
    """One ``a=crypto`` attribute: tag, suite and the 30-byte master key || salt."""

    tag: int
    suite: str
    key: bytes = field(repr=False)

    def attribute(self) -> str:
        """The SDP attribute value (after ``a=crypto:``)."""
        return f"{self.tag} {self.suite} inline:{base64.b64encode(self.key).decode()}"


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """A negotiated SRTP stream pair: the suite, our key (what we send) and the peer's."""

    suite: str
    local: bytes = field(repr=False)
    remote: bytes = field(repr=False)


def new_key() -> bytes:
    """A fresh random master key and salt (one per call and direction, never reused)."""
    return os.urandom(KEY_SALT_LEN)


def our_offer() -> tuple[Crypto, ...]:
    """The crypto lines of an offer: every suite we take, each with a fresh key (tags 1, 2, ...)."""
    return tuple(Crypto(i + 1, suite, new_key()) for i, suite in enumerate(SUITES))


def _lifetime(text: str) -> int:
    """``2^31`` or a decimal number of packets."""
    if text.startswith("2^"):
        exp = text[2:]
        if not (0 < len(exp) <= 2 and exp.isascii() and exp.isdigit()):
            raise CryptoError("bad key lifetime")
        return 2 ** int(exp)
    if not (0 < len(text) <= 20 and text.isascii() and text.isdigit()):
        raise CryptoError("bad key lifetime")
    return int(text)


def parse_crypto(value: str) -> Crypto:
    """An ``a=crypto`` value (``1 AES_CM_128_HMAC_SHA1_80 inline:<base64>[|lifetime][|mki:len]``).

    CryptoError when we cannot use it: a suite we do not support, key parameters other than one
    ``inline:`` key, base64 that does not decode to exactly 30 bytes, a lifetime under 2^31, an
    MKI (its packets would carry an MKI field, which we do not read), or session parameters."""
    parts = value.split()
    if len(parts) < 3:
        raise CryptoError("crypto attribute needs a tag, a suite and key parameters")
    tag, suite, key_params, session_params = parts[0], parts[1], parts[2], parts[3:]
    if not _TAG.fullmatch(tag):
        raise CryptoError("bad crypto tag")
    if suite not in SUITES:
        raise CryptoError(f"unsupported crypto suite {suite[:40]!r}")
    if session_params:
        raise CryptoError("crypto session parameters are not supported")
    if ";" in key_params:
        raise CryptoError("more than one key in a crypto attribute")
    method, _, info = key_params.partition(":")
    if method != "inline":
        raise CryptoError("crypto key method is not inline")
    key_b64, *extra = info.split("|")
    if len(extra) > 2:
        raise CryptoError("bad crypto key parameters")
    for param in extra:
        if ":" in param:
            raise CryptoError("crypto MKI is not supported")
        if _lifetime(param) < MIN_LIFETIME:
            raise CryptoError("crypto key lifetime is too short")
    try:
        key = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError("crypto key is not base64") from None
    if len(key) != KEY_SALT_LEN:
        raise CryptoError(f"crypto key and salt must be {KEY_SALT_LEN} bytes, not {len(key)}")
    return Crypto(int(tag), suite, key)


def choose(lines: tuple[str, ...], *, tags: dict[int, str] | None = None) -> Crypto | None:
    """The first line we can use (an answerer picks in the offerer's order), or None. With
    ``tags`` (an offerer reading the answer): only a line with one of our tags and its suite."""
    for line in lines:
        try:
            crypto = parse_crypto(line)
        except CryptoError:
            continue
        if tags is None or tags.get(crypto.tag) == crypto.suite:
            return crypto
    return None


def _profile(sdp: SdpAnswer) -> str:
    """RTP/SAVP or RTP/AVP (what we treat as plain RTP); CryptoError for a secure profile we do not do."""
    if sdp.proto == SAVP:
        return SAVP
    if "SAVP" in sdp.proto:  # RTP/SAVPF, UDP/TLS/RTP/SAVP(F): DTLS-SRTP or feedback profiles
        raise CryptoError(f"media profile {sdp.proto[:24]} is not supported (RTP/SAVP with SDES only)")
    return AVP


def keys_of_answer(answer: SdpAnswer, offered: tuple[Crypto, ...]) -> SrtpKeys | None:
    """The SRTP keys an SDP answer to our offer sets (None: plain RTP). ``offered`` are the
    crypto lines we offered (none unless the trunk requires SRTP); CryptoError (the reason the call
    fails) when the answer does not match the offer."""
    profile = _profile(answer)
    if not offered:
        if profile == SAVP:
            raise CryptoError("the answer is RTP/SAVP to our RTP/AVP offer")
        return None
    if profile != SAVP:
        raise CryptoError("the answer is plain RTP (RTP/AVP) but this trunk requires SRTP")
    chosen = choose(answer.crypto, tags={c.tag: c.suite for c in offered})
    if chosen is None:
        raise CryptoError("the answer has no a=crypto line matching our offer")
    ours = next(c for c in offered if c.tag == chosen.tag)
    return SrtpKeys(chosen.suite, ours.key, chosen.key)


def keys_of_offer(mode: str, offer: SdpAnswer, local: bytes | None = None) -> tuple[Crypto, SrtpKeys] | None:
    """Answering ``offer`` under a trunk's ``mode``: our crypto line (the chosen line's tag and
    suite, our key: ``local`` or a fresh one) and the keys, or None for plain RTP; CryptoError
    (a 488) when the offer is SRTP and SRTP is off, plain and SRTP required, or has no usable line."""
    profile = _profile(offer)
    if profile == AVP:
        if mode == "required":
            raise CryptoError("plain RTP (RTP/AVP) offered but this trunk requires SRTP")
        return None
    if mode not in ("optional", "required"):
        raise CryptoError("SRTP (RTP/SAVP) offered but SRTP is off on this trunk")
    chosen = choose(offer.crypto)
    if chosen is None:
        raise CryptoError("no a=crypto line we support (AES_CM_128_HMAC_SHA1_80 or _32, one inline key)")
    ours = Crypto(chosen.tag, chosen.suite, local or new_key())
    return ours, SrtpKeys(chosen.suite, ours.key, chosen.key)


class SrtpContext:
    """The two libsrtp sessions of a call: protect what we send, unprotect what we receive.

    ``unprotect`` / ``unprotect_rtcp`` raise :class:`pylibsrtp.Error` for a packet that fails
    authentication or the replay check: the caller drops it."""

    def __init__(self, keys: SrtpKeys) -> None:
        self.keys = keys
        profile = SUITES[keys.suite]
        self._tx = pylibsrtp.Session(pylibsrtp.Policy(
            key=keys.local, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile))
        self._rx = pylibsrtp.Session(pylibsrtp.Policy(
            key=keys.remote, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile))

    def protect(self, packet: bytes) -> bytes:
        return self._tx.protect(packet)

    def protect_rtcp(self, packet: bytes) -> bytes:
        return self._tx.protect_rtcp(packet)

    def unprotect(self, packet: bytes) -> bytes:
        return self._rx.unprotect(packet)

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        return self._rx.unprotect_rtcp(packet)


Error = pylibsrtp.Error
