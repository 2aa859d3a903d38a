"""What of an event a customer may see: the public view of its payload.

The event log carries fields that only the services need. They stay out of everything a
customer reads, the call's timeline (GET /v1/voice/calls/{id}/events) and webhook bodies:

- ``cache_hit``: whether a render came from the TTS cache. Public, it is an oracle: it
  says whether that exact text was rendered before.
- media-store refs (``audio_ref``, ``wav_ref``, ``mp3_ref``, ``callee_ref``,
  ``agent_ref``): storage addresses, and content hashes: a TTS render's ref is a
  fingerprint of its text, which anyone able to render can compare guesses against.
  Customers get audio through recording links, never by ref.
- ``timer.fired``'s ``token``: the orchestrator's timer bookkeeping.

Add a field here when an event gains one that is not meant for customers.
"""

from __future__ import annotations

from typing import Any

_MEDIA_REFS = frozenset({"audio_ref", "wav_ref", "mp3_ref", "callee_ref", "agent_ref"})
# Dropped from every event type's payload.
INTERNAL_FIELDS: frozenset[str] = frozenset({"cache_hit"}) | _MEDIA_REFS
# Dropped from one type's payload only.
INTERNAL_BY_TYPE: dict[str, frozenset[str]] = {"timer.fired": frozenset({"token"})}


def public_data(type: str, data: Any) -> Any:
    """``data`` without the internal fields of events of ``type`` (a new dict; other values as is)."""
    if not isinstance(data, dict):
        return data
    drop = INTERNAL_BY_TYPE.get(type)
    return {k: v for k, v in data.items() if k not in INTERNAL_FIELDS and not (drop and k in drop)}


# Who ended a call, said in words when the carrier gave no reason (a BYE carries none).
_ENDED_BY = {"callee": "callee hung up", "caller": "hung up by caller", "system": "ended by the service"}


def end_reason(reason: str | None, hangup_by: str | None) -> str | None:
    """The public `end_reason` of a call: the carrier's reason, else who hung up."""
    return reason or _ENDED_BY.get(hangup_by or "")
