"""G.711 mu-law and A-law codecs (ITU-T G.711) with lookup tables.

The stdlib ``audioop`` module is deprecated (removed in Python 3.13), so the
classic Sun reference algorithm is used once to build 64 K-entry tables; encoding
and decoding a 20 ms frame is then 160 table lookups.
"""

from __future__ import annotations

import sys
from array import array

_BIG_ENDIAN = sys.byteorder == "big"


def _ulaw_encode_sample(s: int) -> int:
    sign = 0x80 if s < 0 else 0
    if s < 0:
        s = -s
    s = min(s, 32635) + 0x84
    exponent = max(0, (s >> 7).bit_length() - 1)
    mantissa = (s >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def _ulaw_decode_sample(u: int) -> int:
    u = ~u & 0xFF
    exponent = (u >> 4) & 0x07
    sample = ((((u & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return -sample if u & 0x80 else sample


_ALAW_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _alaw_encode_sample(s: int) -> int:
    s >>= 3
    if s >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        s = -s - 1
    seg = next((i for i, end in enumerate(_ALAW_SEG_END) if s <= end), 8)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (s >> 1) & 0x0F if seg < 2 else (s >> seg) & 0x0F
    return aval ^ mask


def _alaw_decode_sample(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


def _signed(u: int) -> int:
    return u - 65536 if u >= 32768 else u


_ULAW_ENC = bytes(_ulaw_encode_sample(_signed(u)) for u in range(65536))
_ALAW_ENC = bytes(_alaw_encode_sample(_signed(u)) for u in range(65536))
_ULAW_DEC = [_ulaw_decode_sample(b).to_bytes(2, "little", signed=True) for b in range(256)]
_ALAW_DEC = [_alaw_decode_sample(b).to_bytes(2, "little", signed=True) for b in range(256)]

ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _samples(pcm: bytes) -> array:
    a = array("H")
    a.frombytes(pcm[: len(pcm) & ~1])
    if _BIG_ENDIAN:
        a.byteswap()
    return a


def ulaw_encode(pcm: bytes) -> bytes:
    """s16le PCM -> mu-law bytes."""
    return bytes(map(_ULAW_ENC.__getitem__, _samples(pcm)))


def alaw_encode(pcm: bytes) -> bytes:
    """s16le PCM -> A-law bytes."""
    return bytes(map(_ALAW_ENC.__getitem__, _samples(pcm)))


def ulaw_decode(data: bytes) -> bytes:
    """mu-law bytes -> s16le PCM."""
    return b"".join(map(_ULAW_DEC.__getitem__, data))


def alaw_decode(data: bytes) -> bytes:
    """A-law bytes -> s16le PCM."""
    return b"".join(map(_ALAW_DEC.__getitem__, data))


def encoder(codec: str):
    """Return the encode function for "PCMU" or "PCMA"."""
    return ulaw_encode if codec == "PCMU" else alaw_encode


def decoder(codec: str):
    """Return the decode function for "PCMU" or "PCMA"."""
    return ulaw_decode if codec == "PCMU" else alaw_decode
