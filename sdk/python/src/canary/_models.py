"""Response objects: typed attribute access over the API's JSON, forward compatible.

Every object keeps the JSON it was built from; declared attributes are typed for editors
and type checkers, undeclared fields the API adds later are still reachable as attributes
or with ``obj["field"]``. ``from`` is exposed as ``from_`` (it is a Python keyword).
"""

from __future__ import annotations

import keyword
from typing import Any, ClassVar, Dict, Iterator, List, Mapping, Optional, Type

__all__ = [
    "CanaryObject",
    "Call",
    "CallEvent",
    "Recording",
    "Transcription",
    "GatherResult",
    "RecordingRef",
    "WebhookDelivery",
    "SandboxCallee",
    "Trunk",
    "Voice",
    "PhoneNumber",
    "Flow",
]


def _key_for(name: str) -> str:
    if name.endswith("_") and keyword.iskeyword(name[:-1]):
        return name[:-1]
    return name


def _declared(cls: type) -> frozenset[str]:
    cached = cls.__dict__.get("_declared_cache")
    if cached is None:
        names: set[str] = set()
        for klass in cls.__mro__:
            names.update(getattr(klass, "__annotations__", {}).keys())
        cached = frozenset(n for n in names if not n.startswith("_"))
        setattr(cls, "_declared_cache", cached)
    return cached


def _wrap(value: Any, cls: Optional[type] = None) -> Any:
    if isinstance(value, dict):
        return (cls or CanaryObject)(value)
    if isinstance(value, list):
        return [_wrap(v, cls) for v in value]
    return value


class CanaryObject:
    """A JSON object with attribute access."""

    _nested: ClassVar[Dict[str, type]] = {}

    def __init__(self, data: Optional[Mapping[str, Any]] = None, **fields: Any) -> None:
        merged = dict(data or {})
        merged.update({_key_for(k): v for k, v in fields.items()})
        self.__dict__["_data"] = merged

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        data = self.__dict__["_data"]
        key = _key_for(name)
        if key in data:
            return _wrap(data[key], type(self)._nested.get(key))
        if name in _declared(type(self)):
            return None
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} objects are read-only")

    def __getitem__(self, key: str) -> Any:
        data = self.__dict__["_data"]
        return _wrap(data[key], type(self)._nested.get(key))

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__["_data"]

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dict__["_data"])

    def __len__(self) -> int:
        return len(self.__dict__["_data"])

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def keys(self) -> Any:
        return self.__dict__["_data"].keys()

    def to_dict(self) -> Dict[str, Any]:
        """The raw JSON object (a copy)."""
        import copy

        return copy.deepcopy(self.__dict__["_data"])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CanaryObject):
            return self.__dict__["_data"] == other.__dict__["_data"]
        if isinstance(other, dict):
            return self.__dict__["_data"] == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__['_data']!r})"

    def __dir__(self) -> List[str]:
        extra = [k + "_" if keyword.iskeyword(k) else k for k in self.__dict__["_data"]]
        return sorted(set(list(super().__dir__()) + extra + list(_declared(type(self)))))


class GatherResult(CanaryObject):
    status: Optional[str]
    digits: Optional[str]
    finished_on_key: Optional[str]
    speech: Optional[CanaryObject]


class Transcription(CanaryObject):
    text: Optional[str]
    confidence: Optional[float]


class RecordingRef(CanaryObject):
    """The recording summary embedded in a call."""

    id: str
    duration: Optional[int]
    url: Optional[str]


class PausedSpan(CanaryObject):
    """A stretch of a recording that was paused (silence in the file), in ms from its start."""

    start_ms: int
    end_ms: int


class Recording(CanaryObject):
    id: str
    call_id: str
    duration: Optional[int]
    url: Optional[str]
    transcription: Optional[Transcription]
    paused_spans: Optional[List[PausedSpan]]

    _nested = {"transcription": Transcription, "paused_spans": PausedSpan}


class CallUpdateRef(CanaryObject):
    """What calls.update() sent: the UpdateCall id (call.updated's update_id) and its changes."""

    id: Optional[str]
    changes: List[str]


class Call(CanaryObject):
    """A call. ``call.from_`` is the caller ID (``from`` in the JSON)."""

    id: str
    to: Optional[str]
    from_: Optional[str]
    status: str
    direction: str
    created_at: str
    updated_at: Optional[str]
    answered_at: Optional[str]
    ended_at: Optional[str]
    duration: Optional[int]
    answered_by: Optional[str]
    price: None
    end_reason: Optional[str]
    hangup_by: Optional[str]
    sip_code: Optional[int]
    recording: Optional[RecordingRef]
    transcription: Optional[Transcription]
    gather: Optional[GatherResult]
    parent_call_id: Optional[str]  # the call whose flow `dial` step placed this one (direction outbound-dial)
    update: Optional["CallUpdateRef"]  # in the answer of calls.update()

    _nested = {
        "update": CallUpdateRef,
        "recording": RecordingRef,
        "transcription": Transcription,
        "gather": GatherResult,
    }


class CallEvent(CanaryObject):
    id: str
    type: str
    version: int
    occurred_at: str
    #: The W3C trace id the event was emitted in: the call's trace, as in the ``traceparent``
    #: header the call's creation answered with (None from a server that does not send it).
    trace_id: Optional[str]
    data: Optional[CanaryObject]


class Voice(CanaryObject):
    id: str
    language: str
    language_name: Optional[str]
    gender: Optional[str]
    type: Optional[str]
    engine: Optional[str]
    note: Optional[str]


class PhoneNumber(CanaryObject):
    number: str
    created_at: Optional[str]
    verification: Optional[str]  # "verified", or "pending": a sk_live_ key's number awaiting its call's code
    voice_url: Optional[str]  # incoming calls: the app asked for the call's steps
    flow_id: Optional[str]  # incoming calls: the stored flow run
    webhook_url: Optional[str]  # status webhooks of its incoming calls


class Flow(CanaryObject):
    id: str
    name: Optional[str]
    version: Optional[int]
    created_at: Optional[str]
    updated_at: Optional[str]


class WebhookDelivery(CanaryObject):
    """One webhook delivery of a call, with its attempts."""

    id: Optional[str]


class SandboxCallee(CanaryObject):
    number: str


class Trunk(CanaryObject):
    host: str
    port: Optional[int]
    transport: Optional[str]
    username: Optional[str]
    caller_id: Optional[str]
    allowed_from_prefixes: Optional[List[str]]
    digest_realm: Optional[str]
    allow_legacy_digest: Optional[bool]
    allow_foreign_hops: Optional[bool]
    srtp: Optional[str]


MODEL_TYPES: Dict[str, Type[CanaryObject]] = {
    "call": Call,
    "call_event": CallEvent,
    "recording": Recording,
    "voice": Voice,
    "number": PhoneNumber,
    "flow": Flow,
    "webhook_delivery": WebhookDelivery,
    "sandbox_callee": SandboxCallee,
    "trunk": Trunk,
}
