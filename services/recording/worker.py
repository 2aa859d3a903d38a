"""Recording worker: ``recording.captured`` -> ``recording.completed``.

The captured legs are media-store refs: ``.raw`` = 8 kHz s16le mono PCM (what
the gateway writes), ``.wav`` = any PCM WAV. The recording id is derived from
the captured event's id, so a redelivered event yields the same recording.

``transcribe``: the result carries ``transcribe: true`` when the captured event
says so, or when this worker saw the call's ``call.queued`` with
``transcribe: true``; the transcription worker keys off that flag.

Run: ``python -m services.recording.worker`` (consumer group ``recording``).
"""

from __future__ import annotations

import asyncio
import uuid

from events import Envelope, derive_id
from services.common import audio
from services.common.logging import configure, get_logger
from services.common.media_store import MediaStore, get_media_store
from services.common.event_worker import EventWorker, failed, serve, with_retries

from .encode import process_recording_async

GROUP = "recording"
_MAX_TRACKED_CALLS = 100_000


def load_leg(store: MediaStore, ref: str) -> bytes:
    """Load one captured leg as pcm8k (raw s16le or WAV)."""
    data = store.get(ref)
    if ref.endswith(".wav"):
        return audio.wav_to_pcm8k(data)
    return data


def recording_id_for(env: Envelope) -> str:
    """Deterministic public recording id for a captured event."""
    return "rec_" + uuid.UUID(derive_id(env.id, "recording")).hex[:20]


class RecordingHandler:
    """Encodes captured audio; remembers which calls asked for transcription."""

    types = frozenset({"call.queued", "recording.captured"})  # what the worker takes

    def __init__(self, store: MediaStore | None = None) -> None:
        self.store = store or get_media_store()
        self.transcribe_calls: dict[str, bool] = {}
        self.log = get_logger(service=GROUP)

    def on_timeout(self, env: Envelope, exc: Exception) -> list[Envelope]:
        """An encode over the worker's time limit is a ``recording.failed`` on the log."""
        if env.type != "recording.captured":
            return []
        return failed(env, "recording.failed", {"reason": f"timed out: {exc}"}, GROUP)

    async def __call__(self, env: Envelope) -> list[Envelope]:
        if env.type == "call.queued":
            if env.data.get("transcribe"):
                if len(self.transcribe_calls) >= _MAX_TRACKED_CALLS:  # bound memory: forget the oldest
                    self.transcribe_calls.pop(next(iter(self.transcribe_calls)))
                self.transcribe_calls[env.call_id] = True
            return []
        if env.type != "recording.captured":
            return []
        channels = env.data.get("channels", "mono")

        async def encode():
            callee = await audio.run_blocking(load_leg, self.store, env.data["callee_ref"])
            agent = await audio.run_blocking(load_leg, self.store, env.data["agent_ref"])
            return await process_recording_async(callee, agent, channels, self.store)

        try:  # a transient failure (the store unreachable) is retried with backoff first
            rec = await with_retries(encode, what="recording", log=self.log)
        except Exception as exc:
            return failed(env, "recording.failed", {"reason": f"{type(exc).__name__}: {exc}"}, GROUP)
        data = {
            "recording_id": recording_id_for(env),
            "wav_ref": rec.wav_ref,
            "mp3_ref": rec.mp3_ref,
            "duration_ms": rec.duration_ms,
            "size_bytes": rec.size_bytes,
            "sha256": rec.sha256,
            "channels": rec.channels,
        }
        if env.data.get("paused_spans"):  # where the recording was paused (silence in both files)
            data["paused_spans"] = env.data["paused_spans"]
        if env.data.get("transcribe") or self.transcribe_calls.pop(env.call_id, False):
            data["transcribe"] = True
            if env.data.get("language"):
                data["language"] = env.data["language"]  # the transcript's language, for the transcriber
        return [env.caused("recording.completed", data)]


async def main() -> None:
    log = configure(GROUP)
    await serve(EventWorker(GROUP, RecordingHandler(), log=log))


if __name__ == "__main__":
    asyncio.run(main())
