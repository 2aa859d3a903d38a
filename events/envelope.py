"""The envelope every command and event travels in."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from events import trace

# Namespace for ids derived from other ids; fixed forever, or replays would diverge.
_DERIVE_NS = uuid.UUID("6b1f7f0e-2f1c-4c8e-9f5a-0c1a2b3c4d5e")


def derive_id(causation_id: str, step: str) -> str:
    """A deterministic event id for the output of `step` caused by `causation_id`.

    A processor that crashes and re-handles its input emits the same ids again, so
    downstream consumers that dedupe by event id see each output exactly once.
    """
    return str(uuid.uuid5(_DERIVE_NS, f"{causation_id}/{step}"))


def utc_now() -> str:
    """RFC 3339 UTC timestamp with millisecond precision and a Z suffix."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Envelope:
    """Immutable message: `type` names a command (PlaceCall) or an event (call.ringing)."""

    type: str
    call_id: str
    account_id: str
    data: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: str = field(default_factory=utc_now)
    causation_id: str | None = None
    correlation_id: str | None = None
    # W3C traceparent of the call's trace (events/trace.py); optional: older records have none.
    traceparent: str | None = None
    # W3C tracestate that came with it (vendors' entries), passed on unchanged; optional too.
    tracestate: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "id": self.id,
            "type": self.type,
            "version": self.version,
            "call_id": self.call_id,
            "account_id": self.account_id,
            "occurred_at": self.occurred_at,
            "causation_id": self.causation_id,
            "correlation_id": self.correlation_id,
            "data": self.data,
        }
        if self.traceparent is not None:  # absent rather than null: untraced records keep their bytes
            d["traceparent"] = self.traceparent
        if self.tracestate is not None:
            d["tracestate"] = self.tracestate
        return d

    def caused(self, type: str, data: dict[str, Any] | None = None, *, step: str | None = None,
               occurred_at: str | None = None, version: int | None = None) -> "Envelope":
        """A follow-up message caused by this one, with a deterministic id per step, in the
        same trace (its parent span: this process handling this message, events/trace.py)."""
        from events.registry import latest_version

        ctx = trace.handled(self)
        return Envelope(
            type=type,
            call_id=self.call_id,
            account_id=self.account_id,
            data=data or {},
            version=version or latest_version(type),
            id=derive_id(self.id, step or type),
            occurred_at=occurred_at or utc_now(),
            causation_id=self.id,
            correlation_id=self.correlation_id or self.id,
            traceparent=ctx.header,
            tracestate=ctx.state,
        )

    def with_data(self, **changes: Any) -> "Envelope":
        return replace(self, data={**self.data, **changes})


def new_envelope(type: str, call_id: str, account_id: str, data: dict[str, Any] | None = None,
                 **kw: Any) -> Envelope:
    """A fresh message at the latest version of its type."""
    from events.registry import latest_version

    kw.setdefault("version", latest_version(type))
    return Envelope(type=type, call_id=call_id, account_id=account_id, data=data or {}, **kw)
