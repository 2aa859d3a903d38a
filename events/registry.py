"""Registry from message type name (and version) to its payload model and metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class MessageType:
    name: str
    version: int
    kind: str  # "command" | "event"
    model: type[BaseModel]
    example: dict[str, Any]
    summary: str


REGISTRY: dict[str, dict[int, MessageType]] = {}
# (type, from_version) -> pure function turning a v(n) payload into v(n+1).
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def register(name: str, *, version: int = 1, kind: str = "event", example: dict[str, Any]):
    """Class decorator: record `model` as the payload of `name` at `version`."""

    def wrap(model: type[BaseModel]) -> type[BaseModel]:
        summary = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else name
        REGISTRY.setdefault(name, {})[version] = MessageType(name, version, kind, model, example, summary)
        return model

    return wrap


def upcaster(name: str, from_version: int):
    """Decorator for a pure function upgrading a payload of `name` from `from_version`."""

    def wrap(fn: Callable[[dict[str, Any]], dict[str, Any]]):
        UPCASTERS[(name, from_version)] = fn
        return fn

    return wrap


def latest_version(name: str) -> int:
    versions = REGISTRY.get(name)
    return max(versions) if versions else 1


def payload_model(name: str, version: int | None = None) -> type[BaseModel] | None:
    versions = REGISTRY.get(name)
    if not versions:
        return None
    mt = versions.get(version if version is not None else max(versions))
    return mt.model if mt else None


def all_types() -> list[MessageType]:
    """Every registered (type, version), commands first, sorted by name."""
    import events.catalog  # noqa: F401  (registers the catalog)

    out = [mt for versions in REGISTRY.values() for mt in versions.values()]
    return sorted(out, key=lambda m: (m.kind != "command", m.name, m.version))
