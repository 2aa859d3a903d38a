"""Topic names (public interface) and the settings they are created with.

CANARY_TOPIC_PREFIX lets a test run use its own topics on a shared broker; it is
empty in every real deployment, so the public names are exactly the ones below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_PREFIX = os.environ.get("CANARY_TOPIC_PREFIX", "")

COMMANDS = _PREFIX + "voice.call.commands"
EVENTS = _PREFIX + "voice.call.events"
MEDIA_AUDIO = _PREFIX + "voice.media.audio"
DLQ = _PREFIX + "voice.dlq"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    config: dict[str, str]


def topic_specs(prefix: str | None = None) -> list[TopicSpec]:
    """The topics the service needs, with explicit settings (partitions are set by the caller)."""
    p = _PREFIX if prefix is None else prefix
    return [
        # Commands are work requests; a week is plenty to recover any consumer.
        TopicSpec(p + "voice.call.commands", {"retention.ms": str(7 * 24 * 3600 * 1000), "cleanup.policy": "delete"}),
        # The event log is the source of truth: kept forever, replayable from offset 0.
        TopicSpec(p + "voice.call.events", {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}),
        # Live audio only matters while a call lives.
        TopicSpec(p + "voice.media.audio", {"retention.ms": str(3600 * 1000), "cleanup.policy": "delete"}),
        # Rejected input is evidence: keep it a month for humans to inspect.
        TopicSpec(p + "voice.dlq", {"retention.ms": str(30 * 24 * 3600 * 1000), "cleanup.policy": "delete"}),
    ]
