"""Validation of the public ``tts`` object, for the API (422 on any error)."""

from __future__ import annotations

from typing import Any

from .catalog import DEFAULT_VOICE, VOICES
from .ssml import SsmlError, parse

SPEED_RANGE = (0.5, 2.0)
PITCH_RANGE = (-20.0, 20.0)

MAX_TEXT_CHARS = 5000
_KNOWN_FIELDS = {"text", "voice", "speed", "pitch"}


def _number(value: Any) -> float | None:
    # bool is an int subclass in Python; "speed": true must not pass as 1.0.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def validate_tts(tts: Any) -> list[dict]:
    """Return a list of problems with a ``tts`` request object (empty = valid).

    Each problem is ``{"field", "message"}`` plus ``"position"`` (character
    offset in ``text``) for SSML errors and ``"allowed"`` (valid voice ids) for
    an unknown voice. Defaults: voice ``en-US-Neural2-F``, speed 1.0, pitch 0.
    """
    if not isinstance(tts, dict):
        return [{"field": "tts", "message": "tts must be an object"}]
    errors: list[dict] = []
    for key in sorted(set(tts) - _KNOWN_FIELDS):
        errors.append({"field": f"tts.{key}", "message": f"unknown field {key!r}"})

    voice_id = tts.get("voice", DEFAULT_VOICE)
    voice = VOICES.get(voice_id) if isinstance(voice_id, str) else None
    if voice is None:
        errors.append({
            "field": "tts.voice",
            "message": f"unknown voice {voice_id!r}",
            "allowed": sorted(VOICES),
        })

    for name, (lo, hi), default in (("speed", SPEED_RANGE, 1.0), ("pitch", PITCH_RANGE, 0.0)):
        value = _number(tts.get(name, default))
        if value is None:
            errors.append({"field": f"tts.{name}", "message": f"{name} must be a number"})
        elif not lo <= value <= hi:
            errors.append({"field": f"tts.{name}", "message": f"{name} must be between {lo:g} and {hi:g}"})

    text = tts.get("text")
    if not isinstance(text, str) or not text.strip():
        errors.append({"field": "tts.text", "message": "text is required"})
    elif len(text) > MAX_TEXT_CHARS:
        errors.append({"field": "tts.text", "message": f"text longer than {MAX_TEXT_CHARS} characters"})
    else:
        try:
            segments = parse(text, voice.language if voice else "en-US")
        except SsmlError as exc:
            errors.append({"field": "tts.text", "message": exc.message, "position": exc.position})
        else:
            if not any(s.text for s in segments):
                errors.append({"field": "tts.text", "message": "text contains nothing to speak"})
    return errors
