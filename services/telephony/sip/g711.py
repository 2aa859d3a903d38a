"""G.711 codec selection for RTP payload types; the codecs live in services.common.audio."""

from __future__ import annotations

from services.common.audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

__all__ = ["alaw_decode", "alaw_encode", "decoder", "encoder", "ulaw_decode", "ulaw_encode"]


def encoder(codec: str):
    """Return the encode function for "PCMU" or "PCMA"."""
    return ulaw_encode if codec == "PCMU" else alaw_encode


def decoder(codec: str):
    """Return the decode function for "PCMU" or "PCMA"."""
    return ulaw_decode if codec == "PCMU" else alaw_decode
