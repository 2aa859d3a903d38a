"""The IVR bot's ears, brain and voice, on the project's own engines: the speech endpointer
(services/lib/speech.py: the Silero VAD unless CANARY_VAD=energy), faster-whisper
(services/transcription) and Piper (services/tts).
Shared by examples/ivr_bot.py and the pipecat interop test's processors."""

from __future__ import annotations

import re
from functools import lru_cache

from services.common.config import settings
from services.lib.speech import Endpointer, SileroEndpointer, make_endpointer

GREETING = "Hello, this is the Canary booking line. How can I help you?"
GOODBYE = "Goodbye."


@lru_cache(maxsize=1)
def _renderer():
    from services.tts.render import Renderer

    return Renderer(store=object())  # synthesis only: nothing is stored


def speak(text: str, voice: str = "en-US-Neural2-F") -> bytes:
    """Text -> 8 kHz 16-bit PCM (Piper; blocking, ~16x real time)."""
    from services.lib.voices.catalog import get_voice

    return _renderer().synthesize(text, get_voice(voice))


def transcribe(pcm8k: bytes) -> str:
    """8 kHz 16-bit PCM -> text (faster-whisper tiny; blocking)."""
    from services.transcription.engine import get_transcriber

    return get_transcriber().transcribe(pcm8k, language="en").text.strip()


def answer(heard: str) -> str:
    """What the bot says to what it heard (a tiny rule-based brain)."""
    words = set(re.findall(r"[a-z']+", heard.lower()))
    if words & {"book", "booking", "table", "reservation", "reserve"}:
        return "Your table is booked for seven o'clock tonight. Goodbye."
    if words & {"hours", "open", "close"}:
        return "We are open from noon to eleven every day. Goodbye."
    if not words:
        return "Sorry, I did not hear anything. Goodbye."
    return "Sorry, I can only take bookings. Goodbye."


def utterances() -> Endpointer | SileroEndpointer:
    """A fresh endpointer: feed it 20 ms frames; 'ended' means an utterance is complete.

    The trained VAD by default, as speech gather and live transcription use: line noise does
    not start an utterance (nor barge in on the bot), and a pause inside a sentence ends it
    less often (bench/languages.py)."""
    return make_endpointer(settings().transcription.vad)
