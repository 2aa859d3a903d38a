"""Generate schemas/ from the event catalog (the models are the single source)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from events.registry import MessageType, all_types

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"

ENVELOPE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://canary.dev/schemas/envelope.json",
    "title": "Envelope",
    "description": "Every command and event on Kafka travels in this envelope (JSON).",
    "type": "object",
    "required": ["id", "type", "version", "call_id", "account_id", "occurred_at", "data"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "type": {"type": "string", "description": "PlaceCall, call.ringing, ..."},
        "version": {"type": "integer", "minimum": 1},
        "call_id": {"type": "string", "description": "Kafka key; all of a call's messages share a partition"},
        "account_id": {"type": "string"},
        "occurred_at": {"type": "string", "format": "date-time"},
        "causation_id": {"type": ["string", "null"], "format": "uuid"},
        "correlation_id": {"type": ["string", "null"], "format": "uuid"},
        "traceparent": {"type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}",
                        "description": "W3C Trace Context of the call's trace (version-traceid-parentid-flags);"
                                       " optional, absent on records written before it existed. A consumer"
                                       " ignores one it cannot parse (docs/architecture.md, 'Following a call')"},
        "tracestate": {"type": "string", "maxLength": 512,
                       "description": "W3C tracestate that came with the traceparent (vendors' list members),"
                                      " passed on unchanged; optional, and read only next to a valid"
                                      " traceparent (an invalid one is ignored)"},
        "data": {"type": "object"},
    },
    "additionalProperties": False,
}


def schema_for(mt: MessageType) -> dict[str, Any]:
    """JSON Schema (2020-12) of one message type's payload, with its example."""
    s = mt.model.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://canary.dev/schemas/{relpath(mt)}",
        "title": f"{mt.name} v{mt.version}",
        "description": mt.summary,
        "x-kind": mt.kind,
        "x-topic": "voice.call.commands" if mt.kind == "command" else "voice.call.events",
        **{k: v for k, v in s.items() if k not in ("title", "description")},
        "examples": [mt.example],
    }


def relpath(mt: MessageType) -> str:
    folder = "commands" if mt.kind == "command" else "events"
    return f"{folder}/{mt.name}.v{mt.version}.json"


def documents() -> dict[str, dict[str, Any]]:
    """relative path -> schema document, for every registered type plus the envelope."""
    docs = {"envelope.json": ENVELOPE_SCHEMA}
    for mt in all_types():
        docs[relpath(mt)] = schema_for(mt)
    return docs


def render(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def export(root: Path = SCHEMAS) -> list[str]:
    """Write every schema; returns the paths written."""
    out = []
    for rel, doc in documents().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(render(doc))
        out.append(str(path.relative_to(ROOT)))
    return out
