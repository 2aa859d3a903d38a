"""SDP offer/answer for one audio stream (RFC 4566, RFC 3264), G.711 + RFC 4733 only; with
``a=crypto`` lines (RFC 4568) the stream is RTP/SAVP (``srtp.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .srtp import Crypto

PCMU = 0
PCMA = 8
DEFAULT_DTMF_PT = 101
_STATIC_NAMES = {PCMU: "PCMU", PCMA: "PCMA"}


class SdpError(ValueError):
    """The SDP body cannot be used for our audio stream."""


def _uint(text: str, max_digits: int) -> int | None:
    """ASCII digits only, at most ``max_digits`` of them (``int`` takes other scripts'
    digits, ``isdigit`` superscripts that ``int`` then refuses); None otherwise."""
    if 0 < len(text) <= max_digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def build_offer(
    ip: str,
    port: int,
    *,
    session_id: int,
    version: int = 1,
    payloads: tuple[int, ...] = (PCMU, PCMA),
    dtmf_pt: int | None = DEFAULT_DTMF_PT,
    ptime: int = 20,
    crypto: tuple[Crypto, ...] = (),
) -> str:
    """Return an SDP offer: the G.711 payloads we accept plus telephone-event/8000 (unless
    ``dtmf_pt`` is None: an answer to an offer without it); with ``crypto``, RTP/SAVP and
    its keys (the body then holds key material: never log it)."""
    fmts = " ".join(str(p) for p in (*payloads, *(() if dtmf_pt is None else (dtmf_pt,))))
    lines = [
        "v=0",
        f"o=canary {session_id} {version} IN IP4 {ip}",
        "s=canary",
        f"c=IN IP4 {ip}",
        "t=0 0",
        f"m=audio {port} {'RTP/SAVP' if crypto else 'RTP/AVP'} {fmts}",
    ]
    lines += [f"a=rtpmap:{p} {_STATIC_NAMES.get(p, 'PCMU')}/8000" for p in payloads]
    if dtmf_pt is not None:
        lines += [f"a=rtpmap:{dtmf_pt} telephone-event/8000", f"a=fmtp:{dtmf_pt} 0-16"]
    lines += [f"a=crypto:{c.attribute()}" for c in crypto]
    lines += [f"a=ptime:{ptime}", "a=sendrecv"]
    return "\r\n".join(lines) + "\r\n"


@dataclass(frozen=True, slots=True)
class SdpAnswer:
    ip: str
    port: int
    payloads: tuple[int, ...]
    rtpmap: dict[int, str] = field(default_factory=dict)
    dtmf_pt: int | None = None
    ptime: int | None = None
    direction: str = "sendrecv"
    proto: str = "RTP/AVP"
    crypto: tuple[str, ...] = field(default=(), repr=False)  # the a=crypto values (keys: never logged)

    @property
    def codec(self) -> int:
        """The G.711 payload type we send: the answerer's first preference we support."""
        for pt in self.payloads:
            name = self.rtpmap.get(pt, _STATIC_NAMES.get(pt, "")).upper()
            if name.startswith("PCMU"):
                return PCMU if pt == PCMU else pt
            if name.startswith("PCMA"):
                return PCMA if pt == PCMA else pt
        raise SdpError("no common codec (need PCMU or PCMA)")

    @property
    def codec_name(self) -> str:
        pt = self.codec
        return self.rtpmap.get(pt, _STATIC_NAMES.get(pt, "")).split("/")[0].upper()


def parse_sdp(text: str) -> SdpAnswer:
    """Parse the first audio m= line of an SDP body (session- or media-level c=)."""
    session_ip: str | None = None
    media_ip: str | None = None
    port: int | None = None
    payloads: tuple[int, ...] = ()
    rtpmap: dict[int, str] = {}
    ptime: int | None = None
    direction = "sendrecv"
    proto = "RTP/AVP"
    crypto: list[str] = []
    in_audio = False
    seen_audio = False
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            in_audio = not seen_audio and len(parts) >= 4 and parts[0] == "audio"
            if in_audio:
                seen_audio = True
                port = _uint(parts[1].split("/")[0], 5)
                if port is None or port > 65535:
                    raise SdpError("bad media port")
                proto = parts[2].upper()
                payloads = tuple(n for n in (_uint(p, 3) for p in parts[3:]) if n is not None)
        elif kind == "c":
            parts = value.split()
            if len(parts) >= 3 and parts[1] == "IP4":
                if in_audio:
                    media_ip = parts[2].split("/")[0]
                elif not seen_audio:
                    session_ip = parts[2].split("/")[0]
        elif kind == "a" and (in_audio or not seen_audio):
            attr, _, arg = value.partition(":")
            if attr == "rtpmap" and in_audio:
                pt, _, enc = arg.partition(" ")
                n = _uint(pt, 3)
                if n is not None:
                    rtpmap[n] = enc.strip()
            elif attr == "crypto" and in_audio:
                crypto.append(arg.strip())
            elif attr == "ptime" and _uint(arg.strip(), 4) is not None:
                ptime = int(arg.strip())
            elif attr in ("sendrecv", "sendonly", "recvonly", "inactive"):
                direction = attr
    ip = media_ip or session_ip
    if port is None or ip is None:
        raise SdpError("no audio stream with a connection address")
    dtmf = next(
        (pt for pt, enc in rtpmap.items() if enc.lower().startswith("telephone-event/8000")),
        None,
    )
    return SdpAnswer(ip, port, payloads, rtpmap, dtmf, ptime, direction, proto, tuple(crypto))


def build_answer(offer: SdpAnswer, ip: str, port: int, *, session_id: int, version: int = 1,
                 crypto: Crypto | None = None) -> str:
    """Our SDP answer to ``offer`` (RFC 3264): the first offered codec we support (PCMU or
    PCMA, in the offerer's order) and telephone-event with the offerer's payload type if it
    offered one; RTP/SAVP with our ``crypto`` line when given. SdpError when it offered
    neither G.711 codec (488 Not Acceptable Here)."""
    codec = offer.codec  # raises SdpError: no common codec
    return build_offer(ip, port, session_id=session_id, version=version, payloads=(codec,), dtmf_pt=offer.dtmf_pt,
                       ptime=offer.ptime or 20, crypto=(crypto,) if crypto else ())
