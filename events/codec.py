"""orjson codec for envelopes. Decoding never raises: bad input becomes a DecodeError."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from events.envelope import Envelope
from events.registry import REGISTRY, UPCASTERS

_REQUIRED = ("id", "type", "call_id", "account_id", "occurred_at", "data")


@dataclass(frozen=True, slots=True)
class DecodeError:
    """Why a message could not be understood; goes to voice.dlq with the raw bytes."""

    code: str  # malformed_json | invalid_envelope | unknown_type | unknown_version | invalid_payload
    reason: str
    type: str | None = None
    errors: tuple[dict[str, Any], ...] = ()

    def __bool__(self) -> bool:  # lets callers write `if isinstance(x, DecodeError)` or `if not ok`
        return False


def encode(env: Envelope) -> bytes:
    """Envelope -> JSON bytes."""
    return orjson.dumps(env.to_dict())


def decode(raw: bytes | None) -> Envelope | DecodeError:
    """JSON bytes -> Envelope (payload upcast to the latest version, not yet typed)."""
    if raw is None:
        return DecodeError("malformed_json", "empty message")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return DecodeError("malformed_json", f"not JSON: {exc}")
    if type(obj) is not dict:
        return DecodeError("invalid_envelope", "message is not a JSON object")
    try:
        t, cid, acct, eid, at, data = (obj["type"], obj["call_id"], obj["account_id"], obj["id"],
                                        obj["occurred_at"], obj["data"])
    except KeyError:
        missing = [k for k in _REQUIRED if k not in obj]
        return DecodeError("invalid_envelope", f"missing envelope fields: {', '.join(missing)}", obj.get("type"))
    # The hot path (every consumer decodes every event): one cheap check, details on failure.
    if not (type(t) is str and type(cid) is str and type(acct) is str and type(eid) is str
            and type(at) is str and t and cid and acct and eid and at):
        for k in ("id", "type", "call_id", "account_id", "occurred_at"):
            if not isinstance(obj[k], str) or not obj[k]:
                return DecodeError("invalid_envelope", f"envelope field {k} must be a non-empty string",
                                   t if isinstance(t, str) else None)
    if type(data) is not dict:
        return DecodeError("invalid_envelope", "envelope field data must be an object", t)
    version = obj.get("version", 1)
    if type(version) is not int or version < 1:
        return DecodeError("invalid_envelope", "envelope field version must be a positive integer", t)
    versions = REGISTRY.get(t)
    if versions is None:
        return DecodeError("unknown_type", f"unknown message type {t!r}", t)
    if version not in versions:
        return DecodeError("unknown_version", f"{t} has no version {version}", t)
    if len(versions) > 1:
        latest = max(versions)
        while version < latest:  # old payloads are upcast on read, never rewritten in the log
            data = UPCASTERS[(t, version)](data)
            version += 1
    # An optional traceparent that is not a string is ignored (a malformed string too, when it
    # is read: events/trace.py `of`); a trace never makes a record unreadable.
    tp, ts = obj.get("traceparent"), obj.get("tracestate")
    return Envelope(t, cid, acct, data, version, eid, at, obj.get("causation_id"), obj.get("correlation_id"),
                    tp if type(tp) is str else None, ts if type(ts) is str else None)


def decode_payload(env: Envelope) -> BaseModel | DecodeError:
    """Validate an envelope's data against its type's model."""
    mt = REGISTRY.get(env.type, {}).get(env.version)
    if mt is None:
        return DecodeError("unknown_type", f"unknown message type {env.type!r}", env.type)
    try:
        # model_validate without its Python wrapper (the same validator): every consumer
        # validates every record it takes, so this is on the hot path.
        return mt.model.__pydantic_validator__.validate_python(env.data)
    except ValidationError as exc:
        errors = tuple(
            {"field": ".".join(str(p) for p in e["loc"]) or None, "code": e["type"], "message": e["msg"]}
            for e in exc.errors(include_url=False)
        )
        return DecodeError("invalid_payload", f"{env.type}: " + "; ".join(
            f"{e['field'] or 'data'}: {e['message']}" for e in errors), env.type, errors)


def decode_typed(raw: bytes | None) -> tuple[Envelope, BaseModel] | DecodeError:
    """Decode and validate in one step."""
    env = decode(raw)
    if isinstance(env, DecodeError):
        return env
    payload = decode_payload(env)
    if isinstance(payload, DecodeError):
        return payload
    return env, payload
