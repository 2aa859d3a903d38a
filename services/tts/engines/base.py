"""The engine protocol and the shared segment-rendering loop."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from services.common import audio
from services.lib.voices.catalog import Voice
from services.lib.voices.ssml import Segment, parse

# SSML prosody can push beyond the request limits; engines clamp to these.
_RATE_LIMITS = (0.25, 4.0)
_PITCH_LIMITS = (-24.0, 24.0)


@runtime_checkable
class TtsEngine(Protocol):
    """A speech synthesiser.

    ``speed`` is a tempo multiplier (0.5-2.0, 1.0 = the voice's natural rate).
    ``pitch`` is an offset in semitones (-20..20, 0 = the voice's natural pitch).
    Returns 8 kHz signed 16-bit little-endian mono PCM.
    """

    name: str

    def synthesize(
        self, text_or_segments: str | Sequence[Segment], voice: Voice, speed: float = 1.0, pitch: float = 0.0
    ) -> bytes:
        """Render text (plain or SSML) or pre-parsed segments to pcm8k."""


class SegmentEngine:
    """Implements :meth:`synthesize` over a per-text primitive ``_synth``.

    Subclasses implement ``_synth(text, voice, rate, pitch_st) -> pcm8k``; the
    loop here inserts pauses, applies per-segment volume and combines request
    speed/pitch with SSML prosody.
    """

    name = "base"

    def _synth(self, text: str, voice: Voice, rate: float, pitch_st: float) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def synthesize(
        self, text_or_segments: str | Sequence[Segment], voice: Voice, speed: float = 1.0, pitch: float = 0.0
    ) -> bytes:
        """Render ``text_or_segments`` with ``voice``; see :class:`TtsEngine`."""
        segments = (
            parse(text_or_segments, voice.language) if isinstance(text_or_segments, str) else text_or_segments
        )
        out = bytearray()
        for seg in segments:
            if seg.is_pause:
                out += audio.silence(seg.pause_ms)
                continue
            rate = min(max(speed * seg.rate, _RATE_LIMITS[0]), _RATE_LIMITS[1])
            pitch_st = min(max(pitch + seg.pitch_st, _PITCH_LIMITS[0]), _PITCH_LIMITS[1])
            pcm = self._synth(seg.text, voice, rate, pitch_st)
            if seg.silent:
                pcm = bytes(len(pcm))  # SSML volume="silent": keep the timing, drop the sound
            elif seg.volume_db:
                pcm = audio.apply_gain_db(pcm, seg.volume_db)
            out += pcm
        return bytes(out)
