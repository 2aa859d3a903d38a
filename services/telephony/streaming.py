"""The callee's live audio on voice.media.audio: real-time transcription and speech gather.

Each record is up to 200 ms of the callee's audio: value = raw 8 kHz s16le mono PCM,
key = call_id (so a call's chunks stay in order on one partition), headers =
account_id, channel ("callee"), seq, offset_ms (call time of the chunk's first sample,
counting audio that was not streamed), final="1" on the last chunk of the call, and
why the chunk is streamed:

- ``purpose``: space-separated, ``transcribe`` (the call is recorded with transcribe:
  services/transcription/live.py) and/or ``gather`` (a speech gather is open:
  services/transcription/speech_gather.py). Each consumer skips chunks not meant for it.
- ``gather``: while a speech gather is open, JSON ``{"id", "step", "hints", "language"}``
  with id = the gather.requested event's id, on every chunk (a worker that joins mid-way
  still knows what to match).

Audio is streamed only while there is a purpose: a call that is neither transcribed nor
gathering speech sends nothing. ``flush()`` sends what is buffered at once (the gateway
calls it when the caller stops speaking, so recognition need not wait for a full chunk).
Sends are fire-and-forget from the carrier's frame callback, bounded: if Kafka falls
behind, chunks are dropped (and counted) rather than buffered without limit.
"""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaProducer

from events import topics

CHUNK_FRAMES = 10  # 10 x 20 ms
MAX_IN_FLIGHT = 50
FRAME_MS = 20


class AudioStreamer:
    def __init__(self, producer: AIOKafkaProducer, call_id: str, account_id: str,
                 traceparent: str | None = None, tracestate: str | None = None):
        self.producer, self.call_id, self.account_id = producer, call_id, account_id
        self.traceparent = traceparent.encode() if traceparent else None  # the call's trace, on every chunk
        self.tracestate = tracestate.encode() if tracestate and traceparent else None
        self.frames: list[bytes] = []
        self.seq = 0
        self.offset_ms = 0  # call time of the next frame
        self.dropped = 0
        self.in_flight: set[asyncio.Task] = set()
        self.transcribe = False
        self.language: str | None = None  # of the live transcription (a header on each chunk)
        self._gather: bytes | None = None  # the gather header while a speech gather is open
        self._used: set[str] = set()  # purposes ever streamed (the final chunk carries them)

    @property
    def purposes(self) -> set[str]:
        return ({"transcribe"} if self.transcribe else set()) | ({"gather"} if self._gather is not None else set())

    def start_transcribe(self, language: str | None = None) -> None:
        """Stream for live transcription, in `language` (BCP-47, 'auto', None: English)."""
        self.transcribe = True
        self.language = language

    def open_gather(self, gather_id: str, *, step: str | None = None, hints: list[str] | None = None,
                    language: str | None = None) -> None:
        """Stream (and tag) the audio for this speech gather until :meth:`close_gather`."""
        self._flush(final=False)  # what is buffered belongs to the purposes before
        self._gather = orjson.dumps({"id": gather_id, "step": step, "hints": hints or [], "language": language})

    def close_gather(self) -> None:
        self._flush(final=False)
        self._gather = None

    def add(self, frame: bytes) -> None:
        if not self.transcribe and self._gather is None:
            self.offset_ms += len(frame) // 16  # not streamed, but call time goes on
            return
        self.frames.append(frame)
        if len(self.frames) >= CHUNK_FRAMES:
            self._flush(final=False)

    def flush(self) -> None:
        """Send the buffered frames now (end of an utterance)."""
        self._flush(final=False)

    def close(self) -> None:
        if self._used or self.frames:
            self._flush(final=True)

    def _flush(self, final: bool) -> None:
        pcm, self.frames = b"".join(self.frames), []
        if not pcm and not final:
            return
        if len(self.in_flight) >= MAX_IN_FLIGHT and not final:
            self.dropped += 1
            self.offset_ms += len(pcm) // 16
            return
        purposes = self.purposes or set(self._used)
        self._used |= purposes
        headers = [("account_id", self.account_id.encode()), ("channel", b"callee"),
                   ("seq", str(self.seq).encode()), ("offset_ms", str(self.offset_ms).encode()),
                   ("final", b"1" if final else b"0"), ("purpose", " ".join(sorted(purposes)).encode())]
        if self._gather is not None:
            headers.append(("gather", self._gather))
        if self.language:
            headers.append(("language", self.language.encode()))
        if self.traceparent is not None:
            headers.append(("traceparent", self.traceparent))
        if self.tracestate is not None:
            headers.append(("tracestate", self.tracestate))
        task = asyncio.get_running_loop().create_task(
            self.producer.send(topics.MEDIA_AUDIO, pcm, key=self.call_id.encode(), headers=headers))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)
        self.seq += 1
        self.offset_ms += len(pcm) // 16
