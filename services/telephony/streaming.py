"""Live call audio on voice.media.audio, for real-time transcription.

Each record is 200 ms of the callee's audio: value = raw 8 kHz s16le mono PCM, key =
call_id (so a call's chunks stay in order on one partition), headers = account_id,
channel ("callee"), seq, offset_ms, and final="1" on the last chunk of the call.
Sends are fire-and-forget from the carrier's frame callback, bounded: if Kafka falls
behind, chunks are dropped (and counted) rather than buffered without limit — live
partials are best-effort; the post-call transcript comes from the full recording.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from events import topics

CHUNK_FRAMES = 10  # 10 x 20 ms
MAX_IN_FLIGHT = 50


class AudioStreamer:
    def __init__(self, producer: AIOKafkaProducer, call_id: str, account_id: str):
        self.producer, self.call_id, self.account_id = producer, call_id, account_id
        self.frames: list[bytes] = []
        self.seq = 0
        self.offset_ms = 0
        self.dropped = 0
        self.in_flight: set[asyncio.Task] = set()

    def add(self, frame: bytes) -> None:
        self.frames.append(frame)
        if len(self.frames) >= CHUNK_FRAMES:
            self._flush(final=False)

    def close(self) -> None:
        self._flush(final=True)

    def _flush(self, final: bool) -> None:
        pcm, self.frames = b"".join(self.frames), []
        if not pcm and not final:
            return
        if len(self.in_flight) >= MAX_IN_FLIGHT and not final:
            self.dropped += 1
            self.offset_ms += len(pcm) // 16
            return
        headers = [("account_id", self.account_id.encode()), ("channel", b"callee"),
                   ("seq", str(self.seq).encode()), ("offset_ms", str(self.offset_ms).encode()),
                   ("final", b"1" if final else b"0")]
        task = asyncio.get_running_loop().create_task(
            self.producer.send(topics.MEDIA_AUDIO, pcm, key=self.call_id.encode(), headers=headers))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)
        self.seq += 1
        self.offset_ms += len(pcm) // 16
