"""Media workers on the real local Kafka: request events in, result events out."""

import asyncio

import pytest

from events import decode, new_envelope
from services.common import audio
from services.common.kafka import make_consumer, publish
from services.common.media_store import LocalMediaStore
from services.lib.voices.catalog import get_voice
from services.recording.worker import RecordingHandler
from services.transcription.worker import TranscriptionHandler
from services.tts.engines import EspeakEngine, PiperEngine
from services.common.event_worker import EventWorker
from services.tts.render import Renderer
from services.tts.worker import TtsHandler

pytestmark = pytest.mark.integration


async def _collect(topic: str, want: set[str], timeout: float = 90.0) -> dict[str, object]:
    """Read the topic from the start until every wanted type has appeared."""
    consumer = make_consumer(topic, group_id=None)
    await consumer.start()
    found: dict[str, object] = {}
    try:
        async with asyncio.timeout(timeout):
            while not want <= set(found):
                for msgs in (await consumer.getmany(timeout_ms=300)).values():
                    for m in msgs:
                        env = decode(m.value)
                        if env.type in want:
                            found.setdefault(env.type, env)
    finally:
        await consumer.stop()
    return found


async def _run(workers, stop: asyncio.Event):
    for w in workers:
        await w.start()
    try:
        while not stop.is_set():
            await asyncio.gather(*(w.run_once(timeout_ms=200) for w in workers))
    finally:
        for w in workers:
            await w.stop()


@pytest.mark.asyncio
async def test_tts_recording_transcription_chain(prefix, producer, tmp_path):
    topic = prefix + "voice.call.events"
    store = LocalMediaStore(tmp_path)
    renderer = Renderer(store, {"piper": PiperEngine(), "espeak": EspeakEngine()})
    workers = [
        EventWorker("tts", TtsHandler(renderer), topic=topic, group_id=prefix + "tts"),
        EventWorker("recording", RecordingHandler(store), topic=topic, group_id=prefix + "recording"),
        EventWorker("transcription", TranscriptionHandler(store), topic=topic, group_id=prefix + "transcription"),
    ]
    speech = renderer.engines["piper"].synthesize("Thank you for calling the library.",
                                                  get_voice("en-US-Neural2-D"))
    callee_ref = store.put(audio.ulaw_decode(audio.ulaw_encode(speech)), "raw")
    agent_ref = store.put(audio.silence(500), "raw")

    await publish(producer, topic, new_envelope("tts.requested", "call_k1", "acct", {
        "text": "Your code is <say-as interpret-as='digits'>42</say-as>", "voice": "de-DE-Standard-A"}))
    await publish(producer, topic, new_envelope("tts.requested", "call_k2", "acct", {"text": "x", "voice": "bad"}))
    await publish(producer, topic, new_envelope("recording.captured", "call_k3", "acct", {
        "callee_ref": callee_ref, "agent_ref": agent_ref, "channels": "dual", "transcribe": True}))

    stop = asyncio.Event()
    runner = asyncio.create_task(_run(workers, stop))
    try:
        found = await _collect(topic, {"tts.rendered", "tts.failed", "recording.completed",
                                       "transcription.completed"})
    finally:
        stop.set()
        await runner

    rendered = found["tts.rendered"]
    assert rendered.call_id == "call_k1" and rendered.data["voice"] == "de-DE-Standard-A"
    assert audio.read_wav(store.get(rendered.data["audio_ref"]))[1] == 8000
    assert found["tts.failed"].call_id == "call_k2"
    rec = found["recording.completed"]
    assert rec.data["channels"] == "dual" and store.exists(rec.data["mp3_ref"])
    tr = found["transcription.completed"]
    assert tr.data["recording_id"] == rec.data["recording_id"]
    assert "library" in tr.data["text"].lower()
    assert {s["speaker"] for s in tr.data["segments"]} == {"callee"}
