"""Write schemas/asyncapi.yaml: AsyncAPI 3.0 for the four Kafka topics.

Message payloads are the envelope (schemas/envelope.json) whose `data` is the type's
schema in schemas/commands/*.json or schemas/events/*.json (generated from the catalog).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from events.registry import all_types
from services.ops.schemas import relpath

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI_PATH = ROOT / "schemas" / "asyncapi.yaml"


def _msg_name(name: str) -> str:
    return name.replace(".", "_").replace("-", "_")


def _message(mt: Any) -> dict[str, Any]:
    return {
        "name": mt.name,
        "title": f"{mt.name} v{mt.version}",
        "summary": mt.summary,
        "contentType": "application/json",
        "headers": {"type": "object", "description": "Kafka key = call_id (a call's messages share a partition)"},
        "payload": {"allOf": [
            {"$ref": "./envelope.json"},
            {"type": "object", "properties": {
                "type": {"const": mt.name}, "version": {"const": mt.version},
                "data": {"$ref": f"./{relpath(mt)}"}}},
        ]},
        "examples": [{"name": "example", "payload": {"type": mt.name, "version": mt.version, "data": mt.example}}],
    }


DLQ_PAYLOAD = {
    "type": "object",
    "description": "A command or event a consumer could not process (it failed validation, its handler "
                   "failed on it, or Postgres refused it), with the reason, the consumer and the original "
                   "bytes. Keyed by the source position (topic:partition:offset); each consumer files its own.",
    "required": ["reason", "code", "source", "raw_base64", "rejected_at"],
    "properties": {
        "reason": {"type": "string"},
        "code": {"type": "string", "description": "malformed_json | invalid_envelope | unknown_type | "
                                                  "unknown_version | invalid_payload | unknown_command | "
                                                  "handler_error | handler_timeout | data_error | "
                                                  "webhook_failed | webhook_refused"},
        "type": {"type": ["string", "null"]},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "code": {"type": "string"}, "field": {"type": ["string", "null"]}, "message": {"type": "string"}}}},
        "consumer": {"type": ["string", "null"],
                     "description": "the consumer that rejected it (projector, orchestrator, telephony, tts, ...)"},
        "source": {"type": "object", "properties": {"topic": {"type": "string"},
                                                    "partition": {"type": ["integer", "null"]},
                                                    "offset": {"type": ["integer", "null"]}}},
        "raw_base64": {"type": "string", "contentEncoding": "base64"},
        "raw_text": {"type": "string"},
        "raw_size": {"type": "integer", "description": "size of the original message, bytes"},
        "raw_truncated": {"type": "boolean", "description": "raw_base64 holds only the first 256 KiB"},
        "rejected_at": {"type": "string", "format": "date-time"},
    },
}

AUDIO_PAYLOAD = {
    "type": "string", "format": "binary",
    "description": "A chunk of live call audio for real-time transcription and speech gather "
                   "(8 kHz telephone audio).",
}


def document() -> dict[str, Any]:
    commands = [mt for mt in all_types() if mt.kind == "command"]
    events = [mt for mt in all_types() if mt.kind == "event"]
    messages = {_msg_name(mt.name): _message(mt) for mt in commands + events}
    messages["DeadLetter"] = {"name": "DeadLetter", "contentType": "application/json", "payload": DLQ_PAYLOAD}
    messages["AudioChunk"] = {
        "name": "AudioChunk", "contentType": "application/octet-stream", "payload": AUDIO_PAYLOAD,
        "summary": "Up to 200 ms of the callee's audio: raw 8 kHz s16le mono PCM (services/telephony/streaming.py)",
        "headers": {"type": "object", "properties": {
            "account_id": {"type": "string"},
            "channel": {"type": "string", "enum": ["callee"]},
            "seq": {"type": "string", "description": "chunk number in the call's stream, from 0"},
            "offset_ms": {"type": "string", "description": "stream time of the chunk's first sample (counts "
                                                          "audio that was not streamed)"},
            "final": {"type": "string", "enum": ["0", "1"], "description": "1 on the call's last chunk"},
            "purpose": {"type": "string", "description": "why it is streamed, space-separated: 'transcribe' "
                                                        "(live transcription) and/or 'gather' (a speech gather "
                                                        "is open); consumers skip chunks not meant for them"},
            "gather": {"type": "string", "description": "while a speech gather is open: JSON {id, step, hints, "
                                                       "language}, id = the gather.requested event's id; "
                                                       "answered by a speech.recognized event"}}}}

    def refs(mts: list[Any]) -> dict[str, Any]:
        return {_msg_name(mt.name): {"$ref": f"#/components/messages/{_msg_name(mt.name)}"} for mt in mts}

    channels = {
        "commands": {"address": "voice.call.commands", "messages": refs(commands),
                     "description": "Commands (PlaceCall, HangupCall, UpdateCall), key = call_id. External producers may "
                                    "submit PlaceCall here; it gets the same validation as the HTTP API, and a "
                                    "rejected command yields call.rejected plus a voice.dlq record."},
        "events": {"address": "voice.call.events", "messages": refs(events),
                   "description": "The event log, key = call_id, retained forever: the source of truth."},
        "mediaAudio": {"address": "voice.media.audio",
                       "messages": {"AudioChunk": {"$ref": "#/components/messages/AudioChunk"}},
                       "description": "Live audio chunks for real-time transcription and speech gather, "
                                      "key = call_id."},
        "dlq": {"address": "voice.dlq", "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
                "description": "Commands and events that failed validation, with the reason; never silently dropped."},
    }

    def op(action: str, channel: str, summary: str) -> dict[str, Any]:
        return {"action": action, "channel": {"$ref": f"#/channels/{channel}"}, "summary": summary}

    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Canary Voice event streams", "version": "1.0.0",
                 "description": "Kafka topics of Canary Voice. Every command and event travels in the JSON "
                                "envelope of schemas/envelope.json. Set CANARY_TOPIC_PREFIX only for tests."},
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka", "description": "make run"}},
        "channels": channels,
        "operations": {
            "submitCommand": op("send", "commands", "Submit PlaceCall / HangupCall / UpdateCall (what the HTTP API does)"),
            "consumeCommands": op("receive", "commands", "The orchestrator consumes commands"),
            "publishEvent": op("send", "events", "Services append facts to the event log"),
            "subscribeEvents": op("receive", "events", "Subscribe to call events (projector, webhooks, you)"),
            "publishAudio": op("send", "mediaAudio", "The telephony gateway streams live audio"),
            "consumeAudio": op("receive", "mediaAudio", "The transcription service consumes live audio"),
            "publishDeadLetter": op("send", "dlq", "Rejected input goes here with the reason"),
            "inspectDeadLetters": op("receive", "dlq", "Operators inspect rejected input"),
        },
        "components": {"messages": messages},
    }


def render(doc: dict[str, Any]) -> str:
    return "# Generated by `canary-voice schemas asyncapi`; do not edit by hand.\n" + yaml.safe_dump(
        doc, sort_keys=False, allow_unicode=True, width=110)


def write(path: Path = ASYNCAPI_PATH) -> Path:
    path.write_text(render(document()))
    return path
