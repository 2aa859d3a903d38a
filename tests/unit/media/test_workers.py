"""Media worker handlers (no Kafka): event in -> events out, deterministic ids."""

import pytest

from events import decode_payload, new_envelope
from services.common import audio
from services.common.media_store import LocalMediaStore
from services.recording.worker import RecordingHandler
from services.transcription.engine import Transcript, TranscriptSegment
from services.transcription.worker import TranscriptionHandler
from services.tts.render import Renderer
from services.tts.worker import TtsHandler


class ToneEngine:
    """Fake engine: 100 ms of tone per character, so durations are predictable."""

    name = "tone"

    def __init__(self):
        self.calls = 0

    def synthesize(self, segments, voice, speed=1.0, pitch=0.0):
        self.calls += 1
        return b"".join(audio.silence(s.pause_ms) if s.is_pause else audio.tone(440, 100 * len(s.text))
                        for s in segments)


class FakeTranscriber:
    _model_path = "fake-model"

    def __init__(self):
        self.calls = 0
        self.languages = []

    def transcribe(self, pcm, language=None):
        self.calls += 1
        self.languages.append(language)
        return Transcript("hello there", 0.9, "en", [TranscriptSegment(0.0, 1.0, "hello there")])

    def transcribe_dual(self, callee, agent, language=None):
        self.calls += 1
        self.languages.append(language)
        return Transcript("hi hello", 0.8, "en", [TranscriptSegment(0.0, 0.5, "hi", "agent"),
                                                   TranscriptSegment(0.6, 1.0, "hello", "callee")])


@pytest.fixture
def store(tmp_path):
    return LocalMediaStore(tmp_path)


def _valid(env):
    assert not isinstance(decode_payload(env), Exception) and bool(decode_payload(env)), env.data


@pytest.mark.asyncio
async def test_tts_rendered_then_cache_hit(store):
    engine = ToneEngine()
    h = TtsHandler(Renderer(store, {"piper": engine, "espeak": engine}))
    req = new_envelope("tts.requested", "call_1", "acct_1",
                       {"text": "ab<break time='500ms'/>cd", "voice": "en-US-Neural2-F", "step": "main"})
    (out,) = await h(req)
    assert out.type == "tts.rendered" and out.causation_id == req.id
    assert out.data["duration_ms"] == 900 and out.data["cache_hit"] is False and out.data["step"] == "main"
    _valid(out)
    pcm, rate, _ = audio.read_wav(store.get(out.data["audio_ref"]))
    assert rate == 8000 and audio.duration_ms(pcm) == 900
    (again,) = await h(req)  # redelivery: same id, served from cache
    assert again.id == out.id and again.data["cache_hit"] is True and engine.calls == 1


@pytest.mark.asyncio
async def test_tts_failed_for_bad_request(store):
    h = TtsHandler(Renderer(store, {"piper": ToneEngine(), "espeak": ToneEngine()}))
    (out,) = await h(new_envelope("tts.requested", "c", "a", {"text": "hi", "voice": "nope"}))
    assert out.type == "tts.failed" and "unknown voice" in out.data["reason"]
    _valid(out)


@pytest.mark.asyncio
async def test_sandbox_callee_line_rendered_with_the_prompt_cache(store):
    """A scripted callee's line is a render like a prompt (same cache), answered with its own types."""
    engine = ToneEngine()
    h = TtsHandler(Renderer(store, {"piper": engine, "espeak": engine}))
    prompt = new_envelope("tts.requested", "call_1", "acct_1", {"text": "abcd", "voice": "en-US-Neural2-D"})
    (p,) = await h(prompt)
    line = new_envelope("sandbox.speech.requested", "call_2", "acct_1", {"text": "abcd", "voice": "en-US-Neural2-D"})
    (out,) = await h(line)
    assert out.type == "sandbox.speech.rendered" and out.causation_id == line.id and out.call_id == "call_2"
    assert out.data["audio_ref"] == p.data["audio_ref"] and out.data["cache_hit"] is True and engine.calls == 1
    _valid(out)
    (bad,) = await h(new_envelope("sandbox.speech.requested", "call_2", "acct_1", {"text": "hi", "voice": "nope"}))
    assert bad.type == "sandbox.speech.failed" and "unknown voice" in bad.data["reason"]
    _valid(bad)


@pytest.mark.asyncio
async def test_audio_failed_for_private_url(store, monkeypatch):
    monkeypatch.delenv("CANARY_ALLOW_PRIVATE_URLS", raising=False)
    h = TtsHandler(Renderer(store, {}))
    (out,) = await h(new_envelope("audio.requested", "c", "a", {"url": "http://127.0.0.1/x.mp3"}))
    assert out.type == "audio.failed" and out.data["code"] == "url_not_allowed"
    _valid(out)


@pytest.mark.asyncio
async def test_recording_completed_with_transcribe_flag(store):
    h = RecordingHandler(store)
    assert await h(new_envelope("call.queued", "call_9", "a", {"to": "+15551234567", "from": "+15559876543",
                                                                "created_at": "2024-01-01T00:00:00Z",
                                                                "transcribe": True})) == []
    callee = store.put(audio.tone(440, 1200), "raw")
    agent = store.put(audio.write_wav(audio.tone(880, 800, rate=16000), rate=16000), "wav")
    cap = new_envelope("recording.captured", "call_9", "a",
                       {"callee_ref": callee, "agent_ref": agent, "channels": "dual"})
    (out,) = await h(cap)
    assert out.type == "recording.completed" and out.data["transcribe"] is True
    assert out.data["recording_id"].startswith("rec_") and out.data["duration_ms"] == 1200
    assert out.data["channels"] == "dual" and store.exists(out.data["mp3_ref"])
    _valid(out)
    (again,) = await h(cap)
    assert again.id == out.id and again.data["recording_id"] == out.data["recording_id"]
    assert "transcribe" not in again.data  # flag consumed; the first event already carried it


@pytest.mark.asyncio
async def test_transcription_only_when_asked_and_cached(store):
    fake = FakeTranscriber()
    h = TranscriptionHandler(store, fake)
    wav = store.put(audio.write_wav(audio.interleave(audio.tone(440, 500), audio.tone(440, 500)), channels=2), "wav")
    data = {"recording_id": "rec_1", "wav_ref": wav, "duration_ms": 500, "channels": "dual"}
    assert await h(new_envelope("recording.completed", "c", "a", data)) == []
    (out,) = await h(new_envelope("recording.completed", "c", "a", {**data, "transcribe": True}))
    assert out.type == "transcription.completed" and out.data["recording_id"] == "rec_1"
    assert [s["speaker"] for s in out.data["segments"]] == ["agent", "callee"]
    _valid(out)
    await h(new_envelope("recording.completed", "c", "a", {**data, "transcribe": True}))
    assert fake.calls == 1  # second time from the transcript cache


async def test_the_call_s_transcribe_language_reaches_the_transcriber(store):
    fake = FakeTranscriber()
    h = TranscriptionHandler(store, fake)
    wav = store.put(audio.write_wav(audio.tone(440, 500)), "wav")
    await h(new_envelope("call.queued", "call_es", "a", {"to": "+15551234567", "from": "+15559876543",
                                                          "transcribe": True, "transcribe_language": "es-MX"}))
    (out,) = await h(new_envelope("recording.completed", "call_es", "a",
                                  {"recording_id": "rec_es", "wav_ref": wav, "duration_ms": 500}))
    assert out.type == "transcription.completed" and fake.languages == ["es-MX"]
    # the recording's own language (carried from the call's record options) wins; another cache key
    (out,) = await h(new_envelope("recording.completed", "call_fr", "a",
                                  {"recording_id": "rec_fr", "wav_ref": wav, "duration_ms": 500, "transcribe": True,
                                   "language": "fr"}))
    assert fake.languages == ["es-MX", "fr"]
