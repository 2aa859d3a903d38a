"""SSML and TTS checked by ear: whisper listens to what our TTS says over a phone line."""

from __future__ import annotations

import re

import pytest

from bench.stt import edit_distance, normalize, phone_line, wer
from services.lib.voices.catalog import get_voice
from services.transcription.engine import WhisperTranscriber
from services.tts.engines import PiperEngine

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

PHRASES = [
    "Please call the front desk about your package delivery tomorrow morning.",
    "Your appointment is confirmed for Tuesday afternoon.",
    "Press one for sales or stay on the line to speak with an agent.",
    "We could not process your payment because the card has expired.",
    "Thank you for calling, have a wonderful day.",
    "The meeting has been moved to the large conference room.",
    "Please hold while we transfer your call to the billing department.",
    "If you would like to leave a message, please speak after the tone.",
]


@pytest.fixture(scope="module")
def piper():
    engine, voice = PiperEngine(), get_voice("en-US-Neural2-D")
    return lambda text: phone_line(engine.synthesize(text, voice))


@pytest.fixture(scope="module")
def stt():
    return WhisperTranscriber()


def _digit_tokens(text: str) -> list[str]:
    """Each digit heard as its own token: '1 2 3', '1, 2, 3' and 'one two three' all count;
    a run like '123456' stays one token (that is the failure we look for)."""
    out = []
    for tok in re.findall(r"[a-z]+|\d+", text.lower()):
        if tok in DIGIT_WORDS:
            out.append(str(DIGIT_WORDS.index(tok)))
        elif tok.isdigit():
            out.append(tok)
    return out


def test_say_as_digits_is_heard_as_separate_digits(piper, stt):
    said = stt.transcribe(piper("Your code is <say-as interpret-as='digits'>123456</say-as>."), "en").text
    tokens = _digit_tokens(said)
    assert tokens[-6:] == list("123456"), said
    # control: the same number as plain text is read as one number, not six digits
    plain = stt.transcribe(piper("Your code is 123456."), "en").text
    assert _digit_tokens(plain)[-6:] != list("123456"), plain


def test_tts_to_mulaw_to_whisper_round_trip_wer(piper, stt):
    heard = [stt.transcribe(piper(p)).text for p in PHRASES]
    score = wer(PHRASES, heard)
    misses = [(p, h) for p, h in zip(PHRASES, heard) if edit_distance(normalize(p), normalize(h))]
    assert score <= 0.15, (score, misses)


def test_wer_helper():
    assert wer(["the cat sat"], ["the cat sat"]) == 0
    assert wer(["the cat sat"], ["The cat, sat."]) == 0
    assert wer(["the cat sat on the mat"], ["the bat sat on mat"]) == pytest.approx(2 / 6)
    assert wer(["press 1"], ["press one"]) == 0
    assert edit_distance([], ["a", "b"]) == 2
