"""TTS engines. Each turns text segments into 8 kHz s16le mono PCM."""

from .base import SegmentEngine, TtsEngine
from .espeak import EspeakEngine
from .piper import PiperEngine

__all__ = ["EspeakEngine", "PiperEngine", "SegmentEngine", "TtsEngine"]
