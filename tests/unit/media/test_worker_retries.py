"""Media workers retry a transient failure (is_transient) with capped backoff before failing.

A store that drops the connection a few times: the recording and the transcription still
complete; one that never comes back gives ``recording.failed`` / ``transcription.failed``
after ``CANARY_MEDIA_RETRIES`` retries. A failure that is not transient fails at once.
"""

import pytest

from events import new_envelope
from services.common import audio
from services.common import event_worker
from services.common.consumer import Backoff
from services.common.media_store import LocalMediaStore
from services.recording.worker import RecordingHandler
from services.transcription.worker import TranscriptionHandler
from tests.unit.media.test_workers import FakeTranscriber


class FlakyStore(LocalMediaStore):
    """``get`` fails with a connection error the first ``fails`` times (for ever with -1)."""

    def __init__(self, root, fails: int, exc: Exception | None = None):
        super().__init__(root)
        self.fails, self.gets = fails, 0
        self.exc = exc or ConnectionResetError("connection reset by peer")

    def get(self, ref):
        self.gets += 1
        if self.fails < 0 or self.gets <= self.fails:
            raise self.exc
        return super().get(ref)


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch):
    monkeypatch.setenv("CANARY_MEDIA_RETRIES", "3")
    monkeypatch.setattr(event_worker, "Backoff", lambda: Backoff(initial=0.001, cap=0.004))


def _captured(store):
    return new_envelope("recording.captured", "call_r", "a", {
        "callee_ref": store.put(audio.tone(440, 300), "raw"), "agent_ref": store.put(audio.silence(300), "raw"),
        "channels": "mono"})


async def test_a_recording_rides_out_a_few_dropped_connections(tmp_path):
    store = FlakyStore(tmp_path, fails=2)
    (out,) = await RecordingHandler(store)(_captured(store))
    assert out.type == "recording.completed" and store.gets > 2


async def test_a_store_that_stays_away_is_recording_failed_after_the_retries(tmp_path):
    store = FlakyStore(tmp_path, fails=-1)
    (out,) = await RecordingHandler(store)(_captured(store))
    assert out.type == "recording.failed" and "ConnectionResetError" in out.data["reason"]
    assert store.gets == 4  # the first try and 3 retries


async def test_a_failure_that_is_not_transient_fails_at_once(tmp_path):
    store = FlakyStore(tmp_path, fails=-1, exc=ValueError("not a WAV"))
    (out,) = await RecordingHandler(store)(_captured(store))
    assert out.type == "recording.failed" and store.gets == 1


async def test_a_transcription_rides_out_a_dropped_connection_and_fails_when_it_stays_away(tmp_path):
    for fails, want in ((1, "transcription.completed"), (-1, "transcription.failed")):
        store = FlakyStore(tmp_path / str(fails), fails=fails)
        wav = LocalMediaStore.put(store, audio.write_wav(audio.tone(440, 300)), "wav")
        done = new_envelope("recording.completed", "call_t", "a", {"recording_id": "rec_1", "wav_ref": wav,
                                                                   "duration_ms": 300, "transcribe": True})
        (out,) = await TranscriptionHandler(store, FakeTranscriber())(done)
        assert out.type == want and out.data["recording_id"] == "rec_1"


class FlakyRenderer:
    """A renderer whose store drops the connection the first ``fails`` times (for ever with -1)."""

    def __init__(self, fails: int):
        self.fails, self.calls = fails, 0

    async def render(self, tts, account_id=""):
        from services.tts.render import RenderResult

        self.calls += 1
        if self.fails < 0 or self.calls <= self.fails:
            raise ConnectionResetError("connection reset by peer")
        return RenderResult("sha256:x.wav", 900, tts.get("voice") or "en-US-Neural2-F", False)


def _tts_request():
    return new_envelope("tts.requested", "call_t", "a", {"text": "Hello", "voice": "en-US-Neural2-F"})


async def test_a_tts_render_rides_out_a_few_dropped_connections():
    from services.tts.worker import TtsHandler

    r = FlakyRenderer(fails=2)
    (out,) = await TtsHandler(r)(_tts_request())
    assert out.type == "tts.rendered" and out.data["audio_ref"] == "sha256:x.wav" and r.calls == 3


async def test_a_tts_store_that_stays_away_is_tts_failed_after_the_retries():
    from services.tts.worker import TtsHandler

    r = FlakyRenderer(fails=-1)
    (out,) = await TtsHandler(r)(_tts_request())
    assert out.type == "tts.failed" and "ConnectionResetError" in out.data["reason"] and r.calls == 4
