"""The event catalog: envelope, every command and event type, the codec and topic names.

Everything that crosses Kafka is defined here and nowhere else, so producers and
consumers in every service share one vocabulary.
"""

import events.catalog  # noqa: F401  (registers every type)
from events.codec import DecodeError, decode, decode_payload, decode_typed, encode
from events.envelope import Envelope, derive_id, new_envelope
from events.registry import REGISTRY, MessageType, payload_model

__all__ = [
    "DecodeError",
    "Envelope",
    "MessageType",
    "REGISTRY",
    "decode",
    "decode_payload",
    "decode_typed",
    "derive_id",
    "encode",
    "new_envelope",
    "payload_model",
]
