"""faster-whisper on telephone audio made by our own TTS."""

import re

import pytest

from services.common import audio
from services.lib.voices.catalog import get_voice
from services.recording.encode import encode_recording
from services.transcription.engine import WhisperTranscriber, transcribe
from services.tts.engines import PiperEngine


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


@pytest.fixture(scope="module")
def tts():
    engine, voice = PiperEngine(), get_voice("en-US-Neural2-D")
    return lambda text: engine.synthesize(text, voice)


@pytest.fixture(scope="module")
def stt():
    return WhisperTranscriber()


def _phone_line(pcm: bytes) -> bytes:
    """What survives a G.711 mu-law call leg."""
    return audio.ulaw_decode(audio.ulaw_encode(pcm))


def test_piper_through_mulaw_is_transcribed(tts, stt):
    sentence = "Please call the front desk about your package delivery tomorrow morning."
    result = stt.transcribe(_phone_line(tts(sentence)))
    got = set(_words(result.text))
    expected = {"please", "call", "the", "front", "desk", "about", "your", "package", "delivery",
                "tomorrow", "morning"}
    assert len(expected & got) >= 10, result.text
    assert result.language == "en"
    assert 0.3 < result.confidence <= 1.0
    assert result.segments and result.segments[0].start < 0.5 and result.segments[-1].end > 2.0


def test_silence_yields_empty_transcript(stt):
    result = stt.transcribe(audio.silence(2000))
    assert result.text == "" and result.segments == [] and result.confidence == 0.0


@pytest.mark.asyncio
async def test_dual_channel_recording_merges_speakers_in_time_order(tts):
    agent = _phone_line(tts("Hello, this is the pharmacy calling."))
    reply = _phone_line(tts("Yes, I will pick it up today."))
    gap = audio.silence(audio.duration_ms(agent) + 700)
    callee = gap + reply  # the callee answers after the agent finished
    rec = encode_recording(callee, agent, "dual")
    left, right = audio.load_channels(rec.wav)
    from services.transcription.engine import transcribe_dual

    result = await transcribe_dual(left, right)
    speakers = [s.speaker for s in result.segments]
    assert speakers[0] == "agent" and speakers[-1] == "callee"
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts)
    words = _words(result.text)
    assert "pharmacy" in words and "today" in words
    assert words.index("pharmacy") < words.index("today")
    d = result.to_dict()
    assert {"start", "end", "text", "speaker"} <= set(d["segments"][0])


@pytest.mark.asyncio
async def test_async_api(tts):
    result = await transcribe(_phone_line(tts("Your appointment is confirmed.")))
    assert {"appointment", "confirmed"} <= set(_words(result.text))
