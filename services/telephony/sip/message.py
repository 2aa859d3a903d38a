"""SIP message model, parser and serializer (RFC 3261 section 7, UDP only).

The parser is strict about what the UAC relies on (start line, Via, CSeq, Call-ID,
From, To, Content-Length) and raises :class:`SipParseError` for anything else that
does not look like SIP, so the transport can log and drop garbage datagrams. Its cost is
bounded: at most ``MAX_DATAGRAM`` bytes and ``MAX_HEADERS`` header lines, and every
number is read by :func:`parse_uint` (ASCII digits only, a few of them), so no input
makes it raise anything but SipParseError.
It also builds what we send: every request (:func:`build_request`) and every response
to a request (:func:`make_response`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterable

# RFC 3261 18.1.1 keeps UDP requests under the path MTU; responses with a long route
# set and an SDP answer fit in a few kilobytes. Beyond this a datagram is not read.
MAX_DATAGRAM = 8192
MAX_HEADERS = 128

# Compact header forms (RFC 3261 7.3.3) expanded to their canonical names.
_COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",  # RFC 3265
    "r": "Refer-To",  # RFC 3515
    "b": "Referred-By",  # RFC 3892
}
# Canonical spellings for headers whose "title case" differs from the RFC spelling.
_CANONICAL = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",  # RFC 3262's spellings: some peers match them case-sensitively
    "rseq": "RSeq",
}
# Headers that carry credentials: never printed (see redacted()).
SECRET_HEADERS = frozenset({"Authorization", "Proxy-Authorization"})

_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_REQUIRED = ("Via", "CSeq", "Call-ID", "From", "To")


class SipParseError(ValueError):
    """The datagram is not a SIP message we can process."""


def parse_uint(text: str, max_digits: int = 10, what: str = "number") -> int:
    """A decimal number as SIP writes it: 1 to ``max_digits`` ASCII digits, else
    SipParseError (``str.isdigit`` and ``int`` also take other scripts' digits and
    superscripts, and a 4,300-digit number is a ValueError of its own)."""
    text = text.strip()
    if not 0 < len(text) <= max_digits or not text.isascii() or not text.isdigit():
        raise SipParseError(f"bad {what}")
    return int(text)


def canonical_name(name: str) -> str:
    """Return the canonical spelling of a header name (expands compact forms)."""
    low = name.strip().lower()
    if low in _COMPACT:
        return _COMPACT[low]
    if low in _CANONICAL:
        return _CANONICAL[low]
    return "-".join(part.capitalize() for part in low.split("-"))


def split_commas(value: str) -> list[str]:
    """Split a header value on commas that are outside quotes and angle brackets."""
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    tail = value[start:].strip()
    if tail:
        out.append(tail)
    return [v for v in out if v]


def parse_params(text: str) -> dict[str, str]:
    """Parse ``;k=v;flag`` header parameters into a dict (names lower-cased)."""
    params: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        key, _, val = part.partition("=")
        params[key.strip().lower()] = val.strip().strip('"')
    return params


@dataclass(frozen=True, slots=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str]

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")


def parse_via(value: str) -> Via:
    """Parse one Via header value (``SIP/2.0/UDP host:port;branch=...``)."""
    proto, _, rest = value.strip().partition(" ")
    parts = proto.split("/")
    if len(parts) != 3 or parts[0].upper() != "SIP":
        raise SipParseError("bad Via protocol")
    sent_by, _, params = rest.strip().partition(";")
    host, port = split_hostport(sent_by.strip())
    return Via(parts[2].upper(), host, port, parse_params(params))


def split_hostport(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 in brackets allowed)."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError("bad IPv6 host")
        host, rest = text[1:end], text[end + 1 :]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = text.partition(":")
    if not host:
        raise SipParseError("empty host")
    if port:
        n = parse_uint(port, 5, "port")
        if not 0 < n < 65536:
            raise SipParseError("bad port")
        return host, n
    return host, None


@dataclass(frozen=True, slots=True)
class NameAddr:
    display: str
    uri: str
    params: dict[str, str]

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")


def parse_name_addr(value: str) -> NameAddr:
    """Parse From/To/Contact style values: ``"Name" <sip:u@h>;tag=x`` or ``sip:u@h;tag=x``."""
    value = value.strip()
    lt = value.find("<")
    if lt >= 0:
        gt = value.find(">", lt)
        if gt < 0:
            raise SipParseError("unterminated <uri>")
        display = value[:lt].strip().strip('"')
        uri = value[lt + 1 : gt].strip()
        params = parse_params(value[gt + 1 :])
    else:
        # Without brackets, parameters after ';' belong to the header, not the URI.
        uri, _, rest = value.partition(";")
        display, params = "", parse_params(rest)
    if ":" not in uri:
        raise SipParseError("bad URI in name-addr")
    return NameAddr(display, uri.strip(), params)


def uri_hostport(uri: str) -> tuple[str, int | None]:
    """Return host and port of a sip: URI (user part and parameters stripped)."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    if "@" in rest:
        rest = rest.rsplit("@", 1)[1]
    return split_hostport(rest)


@dataclass(slots=True)
class SipMessage:
    """A SIP request (``method`` set) or response (``status`` set)."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = field(default=b"", repr=False)  # an SDP body may hold SRTP keys: never in a repr

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str) -> str | None:
        """First value of a header (case-insensitive, compact names accepted)."""
        name = canonical_name(name)
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split into items."""
        name = canonical_name(name)
        out: list[str] = []
        for key, value in self.headers:
            if key == name:
                out.extend(split_commas(value))
        return out

    def set(self, name: str, value: str) -> None:
        """Replace every occurrence of a header with one value."""
        name = canonical_name(name)
        self.headers = [(k, v) for k, v in self.headers if k != name]
        self.headers.append((name, value))

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical_name(name), value))

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        num, _, method = (self.get("CSeq") or "").strip().partition(" ")
        return parse_uint(num, 10, "CSeq"), method.strip().upper()

    @property
    def top_via(self) -> Via:
        vias = self.get_all("Via")
        if not vias:
            raise SipParseError("no Via")
        return parse_via(vias[0])

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self.get("From") or "")

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self.get("To") or "")

    def first_line(self) -> str:
        if self.is_request:
            return f"{self.method} {self.uri} SIP/2.0"
        return f"SIP/2.0 {self.status} {self.reason}"

    def encode(self) -> bytes:
        """Serialize with a correct Content-Length (always written, as UDP requires)."""
        lines = [self.first_line()]
        lines += [f"{k}: {v}" for k, v in self.headers if k != "Content-Length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def redacted(self) -> str:
        """Text form for logs: credentials replaced, body omitted."""
        lines = [self.first_line()]
        for k, v in self.headers:
            lines.append(f"{k}: {'<redacted>' if k in SECRET_HEADERS else v}")
        return "\n".join(lines)


def parse_message(data: bytes) -> SipMessage:
    """Parse one SIP datagram; raise SipParseError if it is not well-formed SIP."""
    if not data or len(data) > MAX_DATAGRAM:
        raise SipParseError("empty or oversized datagram")
    sep = data.find(b"\r\n\r\n")
    if sep >= 0:
        head, body = data[:sep], data[sep + 4 :]
    else:
        # Tolerate bare-LF peers; a message without a blank line has no body.
        sep = data.find(b"\n\n")
        head, body = (data[:sep], data[sep + 2 :]) if sep >= 0 else (data, b"")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("header is not UTF-8") from exc
    raw_lines = text.replace("\r\n", "\n").split("\n")
    while raw_lines and not raw_lines[0].strip():
        raw_lines.pop(0)  # RFC 3261 7.5: ignore leading CRLFs (keep-alives)
    if not raw_lines:
        raise SipParseError("no start line")
    if len(raw_lines) > MAX_HEADERS + 1:
        raise SipParseError("too many header lines")
    msg = _parse_start_line(raw_lines[0])
    current: list[str] | None = None
    for line in raw_lines[1:]:
        if line[:1] in (" ", "\t"):
            if current is None:
                raise SipParseError("continuation before any header")
            current[1] += " " + line.strip()  # header folding (RFC 3261 7.3.1)
            continue
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.match(name.strip()):
            raise SipParseError("bad header line")
        current = [canonical_name(name), value.strip()]
        msg.headers.append(current)  # type: ignore[arg-type]
    msg.headers = [(k, v) for k, v in msg.headers]
    for name in _REQUIRED:
        if msg.get(name) is None:
            raise SipParseError(f"missing {name}")
    try:
        num, method = msg.cseq
    except ValueError as exc:
        raise SipParseError("bad CSeq") from exc
    if not method or num < 0 or num >= 2**31:
        raise SipParseError("bad CSeq")
    if msg.is_request and method != msg.method and msg.method not in ("ACK", "CANCEL"):
        raise SipParseError("CSeq method does not match request method")
    msg.top_via  # noqa: B018 - validates the topmost Via
    clen = msg.get("Content-Length")
    if clen is not None:
        n = parse_uint(clen, 5, "Content-Length")
        if n > len(body):
            raise SipParseError("truncated body")
        body = body[:n]  # extra bytes after the body are ignored on UDP (RFC 3261 18.3)
    msg.body = body
    return msg


def _parse_start_line(line: str) -> SipMessage:
    parts = line.strip().split(" ", 2)
    if len(parts) < 2:
        raise SipParseError("bad start line")
    if parts[0] == "SIP/2.0":
        code = parse_uint(parts[1], 3, "status code")
        if not 100 <= code <= 699:
            raise SipParseError("bad status code")
        return SipMessage(status=code, reason=parts[2] if len(parts) > 2 else "")
    if len(parts) != 3 or parts[2] != "SIP/2.0" or not _TOKEN.match(parts[0]):
        raise SipParseError("bad request line")
    if ":" not in parts[1]:
        raise SipParseError("bad Request-URI")
    return SipMessage(method=parts[0].upper(), uri=parts[1])


def new_branch() -> str:
    """A fresh RFC 3261 branch id (magic cookie prefix)."""
    return "z9hG4bK" + os.urandom(8).hex()


def new_tag() -> str:
    return os.urandom(6).hex()


def build_request(
    method: str,
    uri: str,
    *,
    via: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    routes: Iterable[str] = (),
) -> SipMessage:
    """A request with the RFC 3261 8.1.1 headers, always in this order. Every request the
    UAC sends is built here: INVITE, ACK (2xx and non-2xx), CANCEL, BYE."""
    msg = SipMessage(method=method, uri=uri)
    msg.add("Via", via)
    for route in routes:
        msg.add("Route", route)
    msg.add("Max-Forwards", "70")
    msg.add("From", from_)
    msg.add("To", to)
    msg.add("Call-ID", call_id)
    msg.add("CSeq", f"{cseq} {method}")
    return msg


def make_response(req: SipMessage, code: int, reason: str, *, to_tag: str | None = None) -> SipMessage:
    """Response to an incoming request (RFC 3261 8.2.6): Vias, From, To, Call-ID, CSeq copied."""
    resp = SipMessage(status=code, reason=reason)
    for via in req.get_all("Via"):
        resp.add("Via", via)
    resp.add("From", req.get("From") or "")
    to = req.get("To") or ""
    if to_tag and ";tag=" not in to.replace(" ", ""):
        to = f"{to};tag={to_tag}"
    resp.add("To", to)
    resp.add("Call-ID", req.call_id)
    resp.add("CSeq", req.get("CSeq") or "")
    resp.add("Server", "canary-voice")
    return resp
