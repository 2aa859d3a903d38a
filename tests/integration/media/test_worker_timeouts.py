"""A media job that outlives its time limit fails as an event, on the real Kafka.

A transcription whose whisper run never ends (a transcriber that blocks) under a tiny
time limit: the real EventWorker publishes ``transcription.failed`` with the reason on
the events topic, besides the ``handler_timeout`` DLQ record. The limit grows with the
audio's duration (``CANARY_TRANSCRIPTION_TIMEOUT_PER_AUDIO_S``).
"""

from __future__ import annotations

import asyncio
import threading

import orjson
import pytest

from events import decode, new_envelope
from services.common import audio
from services.common.event_worker import EventWorker
from services.common.kafka import make_consumer, publish
from services.common.media_store import LocalMediaStore
from services.transcription.worker import TranscriptionHandler

pytestmark = pytest.mark.integration


class StuckTranscriber:
    """A whisper run that does not end until the test lets it go."""

    _model_path = "stuck"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    def transcribe(self, pcm, language=None):
        self.started.set()
        self.release.wait(120)
        raise RuntimeError("released")

    transcribe_dual = None


async def _find(topic: str, pred, timeout: float = 90.0):
    consumer = make_consumer(topic, group_id=None)
    await consumer.start()
    try:
        async with asyncio.timeout(timeout):
            while True:
                for msgs in (await consumer.getmany(timeout_ms=300)).values():
                    for m in msgs:
                        if (hit := pred(m)) is not None:
                            return hit
    finally:
        await consumer.stop()


def _of_type(type_: str):
    def pred(m):
        env = decode(m.value)
        return env if getattr(env, "type", None) == type_ else None
    return pred


def test_the_time_limit_grows_with_the_audio(monkeypatch, tmp_path):
    monkeypatch.setenv("CANARY_TRANSCRIPTION_TIMEOUT_S", "10")
    monkeypatch.setenv("CANARY_TRANSCRIPTION_TIMEOUT_PER_AUDIO_S", "0.5")
    h = TranscriptionHandler(LocalMediaStore(tmp_path), StuckTranscriber())
    done = new_envelope("recording.completed", "call_t", "acct", {"wav_ref": "x", "duration_ms": 3_600_000})
    assert h.timeout_for(done) == 10 + 0.5 * 3600  # a 1-hour recording gets 30 min more than a short one
    assert h.timeout_for(new_envelope("call.queued", "call_t", "acct", {})) is None  # the worker's default


@pytest.mark.asyncio
async def test_a_transcription_over_its_time_limit_is_a_transcription_failed_on_the_log(prefix, producer, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setenv("CANARY_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("CANARY_TRANSCRIPTION_TIMEOUT_S", "0.3")
    monkeypatch.setenv("CANARY_TRANSCRIPTION_TIMEOUT_PER_AUDIO_S", "0")
    topic = prefix + "voice.call.events"
    store = LocalMediaStore(tmp_path)
    stuck = StuckTranscriber()
    worker = EventWorker("transcription", TranscriptionHandler(store, stuck), topic=topic,
                         group_id=prefix + "transcription")
    wav_ref = store.put(audio.write_wav(audio.tone(440, 500)), "wav")
    done = new_envelope("recording.completed", "call_t1", "acct", {
        "recording_id": "rec_slow", "wav_ref": wav_ref, "duration_ms": 500, "channels": "mono", "transcribe": True})
    await publish(producer, topic, done)

    await worker.start()
    stop = asyncio.Event()

    async def run():
        while not stop.is_set():
            await worker.run_once(timeout_ms=200)

    runner = asyncio.create_task(run())
    try:
        failed = await _find(topic, _of_type("transcription.failed"))
        dead = await _find(prefix + "voice.dlq", lambda m: orjson.loads(m.value) if b"handler_timeout" in m.value
                           else None)
        # It really ran (on a loaded machine the limit may pass before the run starts: it starts anyway).
        assert await asyncio.to_thread(stuck.started.wait, 60)
    finally:
        stop.set()
        stuck.release.set()
        await runner
        await worker.stop()
    assert failed.call_id == "call_t1" and failed.causation_id == done.id
    assert failed.data["recording_id"] == "rec_slow"
    assert "timed out" in failed.data["reason"] and "0.3 s" in failed.data["reason"]
    assert dead  # the DLQ record stays, for operators
