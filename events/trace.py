"""W3C Trace Context (https://www.w3.org/TR/trace-context/) as it travels in the envelope.

A call's trace is its ``traceparent``: ``00-<trace-id>-<parent-id>-<flags>``. The API starts
it (or continues a client's), and every message of the call carries it in the envelope's
optional ``traceparent`` field. A service handling a message continues the trace: same
trace id, and as the parent of what it emits its own span id, derived from its name and the
input's id (:func:`handled`), so re-handling an input after a crash re-emits byte-identical
outputs, exactly as the outputs' ids are derived (``derive_id``).

Vendors' own trace data, W3C ``tracestate``, travels with it in the envelope's optional
``tracestate`` field: we add no entry of our own, so, as the spec asks of such a participant,
every service passes it on unchanged (:attr:`TraceContext.state`). It is only ever read next to
a valid ``traceparent``; one that breaks the spec's grammar or limits is dropped whole.

A message without a usable ``traceparent`` (written before this field existed, by another
producer, or malformed) is never refused: its trace id is derived from its correlation id
(the call's first message), so the calls of before still have one trace id each.

Pure and cheap: no I/O, no OpenTelemetry (services/common/tracing.py exports spans).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any

HEADER = "traceparent"
VERSION = "00"
SAMPLED = 0x01

_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
# version - trace-id - parent-id - trace-flags, lowercase hex only; a later version may add
# fields after a dash (kept unread, as the spec asks).
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?")
_MAX_LEN = 512  # a header longer than any sane future version is not parsed at all

# tracestate (spec section 3.3): list members ``key=value`` split by commas with optional
# spaces or tabs around them; a key is a simple one or ``tenant@system``; a value is up to
# 256 printable ASCII characters other than ``,`` and ``=``, not ending in a space.
_STATE_KEY = r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
_STATE_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_STATE_MEMBER = re.compile(f"({_STATE_KEY})=(?:{_STATE_VALUE})")
MAX_STATE_MEMBERS = 32
MAX_STATE_LEN = 512  # what the spec asks every participant to propagate; longer is not taken

_service = "canary"  # this process's name in derived span ids (set_service)


@dataclass(frozen=True, slots=True)
class TraceContext:
    """One position in a trace: the trace, the span that is the parent of what comes next, flags."""

    trace_id: str  # 32 lowercase hex digits, not all zero
    span_id: str  # 16 lowercase hex digits, not all zero
    flags: int = SAMPLED
    state: str | None = None  # the W3C tracestate that goes with it, already valid (parse_state)

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED)

    @property
    def header(self) -> str:
        """The ``traceparent`` value (always version 00)."""
        return f"{VERSION}-{self.trace_id}-{self.span_id}-{self.flags:02x}"

    def child(self, span_id: str) -> "TraceContext":
        """The same trace with ``span_id`` as the parent of what follows."""
        return TraceContext(self.trace_id, span_id, self.flags, self.state)

    def with_state(self, value: Any) -> "TraceContext":
        """This context with ``value`` as its tracestate when that is a valid one, else none."""
        return TraceContext(self.trace_id, self.span_id, self.flags, parse_state(value))


def parse(value: Any) -> TraceContext | None:
    """A ``traceparent`` value -> TraceContext, or None when it is not a valid one.

    Follows the spec's rules for a receiver: surrounding spaces and tabs are allowed; the
    version is two hex digits but not ``ff``; version 00 is exactly 55 characters; a later
    version is read for its first four fields (anything after must start with a dash);
    neither id may be all zeros; upper case hex is invalid. Only the sampled flag is kept
    (other bits are not ours to propagate as set). Never raises.
    """
    if type(value) is bytes:
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if type(value) is not str or len(value) > _MAX_LEN:
        return None
    m = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if m is None:
        return None
    version, trace_id, span_id, flags, rest = m.groups()
    if version == "ff" or (version == VERSION and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, span_id, int(flags, 16) & SAMPLED)


def parse_state(value: Any) -> str | None:
    """A ``tracestate`` value -> the same list, normalised (no empty members, no spaces around
    them), or None when there is none or it is not valid. ``value`` may be a str, its ASCII
    bytes, or a list of those (a repeated header is one list, its values joined by commas).

    Invalid, and so dropped whole (the spec lets a participant discard a header it cannot
    parse; carrying part of one would pass on a vendor's entry we cannot vouch for): a member
    that is not ``key=value`` by the spec's grammar, a repeated key, more than 32 members,
    more than 512 characters once normalised. Never raises.
    """
    if type(value) is list or type(value) is tuple:
        parts = [_text(v) for v in value]
        if any(p is None for p in parts):
            return None
        value = ",".join(parts)  # type: ignore[arg-type]
    else:
        value = _text(value)
        if value is None:
            return None
    if len(value) > 8 * MAX_STATE_LEN:  # not worth splitting: it cannot shrink to the limit
        return None
    members: list[str] = []
    keys: set[str] = set()
    for member in value.split(","):
        member = member.strip(" \t")
        if not member:
            continue  # empty members are allowed, and not propagated
        m = _STATE_MEMBER.fullmatch(member)
        if m is None or m.group(1) in keys or len(members) == MAX_STATE_MEMBERS:
            return None
        keys.add(m.group(1))
        members.append(member)
    out = ",".join(members)
    return out if members and len(out) <= MAX_STATE_LEN else None


def _text(value: Any) -> str | None:
    # A header's raw bytes count only as ASCII (as in parse).
    if type(value) is bytes:
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if type(value) is str else None


def random_span_id() -> str:
    while True:
        s = os.urandom(8).hex()
        if s != _ZERO_SPAN:
            return s


def new_trace(sampled: bool = True) -> TraceContext:
    """A fresh trace (random ids, as the spec recommends), its first span id included."""
    while True:
        t = os.urandom(16).hex()
        if t != _ZERO_TRACE:
            return TraceContext(t, random_span_id(), SAMPLED if sampled else 0)


def derive_span_id(seed: str) -> str:
    """A deterministic span id for ``seed`` (never all zeros)."""
    s = hashlib.sha256(seed.encode()).hexdigest()[:16]
    return s if s != _ZERO_SPAN else "0" * 15 + "1"


def trace_id_for(key: str) -> str:
    """A deterministic trace id for a message that carries none: the hex of its correlation id
    (a UUID) when it is one, else a hash of it."""
    h = key.replace("-", "").lower()
    if len(h) == 32 and h != _ZERO_TRACE and all(c in "0123456789abcdef" for c in h):
        return h
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def trace_id_of(traceparent: Any, key: str) -> str:
    """The trace id of a message with ``traceparent`` (as in its envelope, or None) and
    correlation id (or, for a call's first message, id) ``key``: what :func:`of` gives it."""
    ctx = parse(traceparent) if traceparent is not None else None
    return ctx.trace_id if ctx is not None else trace_id_for(key)


def set_service(name: str) -> None:
    """Name this process in the span ids it derives (each service process calls it once)."""
    global _service
    _service = name


def service() -> str:
    return _service


def of(env: Any) -> TraceContext:
    """The trace context a message carries: its ``traceparent`` (and valid ``tracestate``), or
    one derived from its correlation id (or its own id) and its id when it has none or an
    invalid one (then without tracestate: it only ever goes with the traceparent it came with)."""
    ctx = parse(env.traceparent) if env.traceparent is not None else None
    if ctx is not None:
        return ctx if env.tracestate is None else ctx.with_state(env.tracestate)
    return TraceContext(trace_id_for(env.correlation_id or env.id), derive_span_id(env.id), SAMPLED)


def continued(traceparent: str | bytes | None, key: str) -> str | None:
    """The ``traceparent`` of what this process emits about ``key`` in the trace ``traceparent``
    names (a Kafka header on the live audio, not an envelope); None when it names none."""
    ctx = parse(traceparent) if traceparent is not None else None
    return ctx.child(derive_span_id(f"{_service}/{key}")).header if ctx is not None else None


def continued_state(traceparent: str | bytes | None, tracestate: str | bytes | None) -> str | None:
    """The ``tracestate`` that goes with :func:`continued` (``traceparent``'s, unchanged): None
    when there is none, when it is invalid, or when ``traceparent`` names no trace."""
    if tracestate is None or (parse(traceparent) if traceparent is not None else None) is None:
        return None
    return parse_state(tracestate)


def handled(env: Any, by: str | None = None) -> TraceContext:
    """The span of handling ``env`` in service ``by`` (default: this process's): same trace,
    its own derived span id. It is the parent of everything the handling emits."""
    parent = of(env)
    return parent.child(derive_span_id(f"{by or _service}/{env.id}"))
