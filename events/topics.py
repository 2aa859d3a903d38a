"""Topic names (public interface) and the settings they are created with.

This module is the one place the topic prefix is read. CANARY_TOPIC_PREFIX lets a test
run use its own topics (and consumer groups, and scopes) on a shared broker; it is empty
in every real deployment, so the public names are exactly the ones below.

The prefix is read when a name is asked for, not at import, because tests set it per
test: call the functions, or read the module attributes (``topics.EVENTS`` is
``events()`` at the moment it is read).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# The public names, without the prefix.
COMMANDS_NAME = "voice.call.commands"
EVENTS_NAME = "voice.call.events"
MEDIA_AUDIO_NAME = "voice.media.audio"
DLQ_NAME = "voice.dlq"


def prefix() -> str:
    """The topic prefix now (CANARY_TOPIC_PREFIX; empty in production)."""
    return os.environ.get("CANARY_TOPIC_PREFIX", "")


_prefix = prefix  # for topic_specs, whose parameter has the same name


def commands() -> str:
    return prefix() + COMMANDS_NAME


def events() -> str:
    return prefix() + EVENTS_NAME


def media_audio() -> str:
    return prefix() + MEDIA_AUDIO_NAME


def dlq() -> str:
    return prefix() + DLQ_NAME


def scoped(name: str) -> str:
    """A consumer group (or any other per-deployment name) under the same prefix as the topics."""
    return prefix() + name


_ATTRIBUTES = {"COMMANDS": commands, "EVENTS": events, "MEDIA_AUDIO": media_audio, "DLQ": dlq}


def __getattr__(name: str) -> str:
    """``topics.EVENTS`` and the others, read at access time (PEP 562)."""
    fn = _ATTRIBUTES.get(name)
    if fn is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return fn()


def __dir__() -> list[str]:
    return sorted([*globals(), *_ATTRIBUTES])


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    config: dict[str, str]


def topic_specs(prefix: str | None = None) -> list[TopicSpec]:
    """The topics the service needs, with explicit settings (partitions are set by the caller)."""
    p = _prefix() if prefix is None else prefix
    return [
        # Commands are work requests; a week is plenty to recover any consumer.
        TopicSpec(p + COMMANDS_NAME, {"retention.ms": str(7 * 24 * 3600 * 1000), "cleanup.policy": "delete"}),
        # The event log is the source of truth: kept forever, replayable from offset 0.
        TopicSpec(p + EVENTS_NAME, {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}),
        # Live audio only matters while a call lives.
        TopicSpec(p + MEDIA_AUDIO_NAME, {"retention.ms": str(3600 * 1000), "cleanup.policy": "delete"}),
        # Rejected input is evidence: keep it a month for humans to inspect.
        TopicSpec(p + DLQ_NAME, {"retention.ms": str(30 * 24 * 3600 * 1000), "cleanup.policy": "delete"}),
    ]
