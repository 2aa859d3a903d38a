"""Real-time transcription: ``voice.media.audio`` -> ``transcription.partial`` events.

The gateway streams the callee's audio of calls with record + transcribe as 200 ms
chunks (key = call_id; headers account_id, channel, seq, offset_ms, final="1" on the
last chunk, purpose; see ``services/telephony/streaming.py``). Chunks whose ``purpose``
lacks ``transcribe`` (streamed only for a speech gather, which
``services/transcription/speech_gather.py`` recognises) are skipped. This worker keeps
a small state per live call and channel:

- the chunks are cut into 20 ms frames and fed to the gather endpointer
  (``services.lib.speech``: the Silero VAD, or the energy one with CANARY_VAD=energy; counted in frames, so an
  accelerated sandbox call segments like a real one);
- while an utterance lasts, a *partial* is transcribed after the first
  ``partial_first_ms`` of speech and then every ``partial_every_ms`` (the whole
  utterance so far each time, so a partial's text supersedes the previous one);
- when the endpointer ends the utterance (silence, or the 15 s cap), on the call's
  final chunk, or when a call goes idle, the utterance gets a *final* transcription.

Each result is a ``transcription.partial`` event on ``voice.call.events``:
``{text, offset_ms, channel, final, utterance, duration_ms}`` where ``offset_ms`` is
where the utterance starts in the call's audio stream and ``utterance`` numbers the
utterances of that channel (a client replaces the partial of an utterance with the
next one, and with the final).

Ids are deterministic: ``derive_id("<call_id>/<channel>/<seq>", "<utt>.<n|final>")``
with ``seq`` the chunk that triggered the result, so re-reading the same stream
re-emits the same ids and consumers dedupe.

The guarantee, whatever the machine's speed: an utterance with more than
``partial_first_ms`` of speech yields at least one interim partial before its final
(unless whisper hears no words in it or fails). A *lead* partial (one of an utterance
with no partial out yet) is never stale, even when the final overtakes it; the first
partial of each utterance is also never dropped on a full queue (it waits for room,
like a final). Its text is what the caller said in the first second, which is
still news to a client that has nothing yet. So on a slow or busy machine partials
come later, but they come, and in order: partial, then final, per utterance.

What is shed under overload, first to last: (1) the *follow-up* partials of an
utterance that already has one out (a newer one supersedes a queued one; one that does
not fit the queue is dropped); (2) chunks older than ``max_lag_s`` (a worker that fell
that far behind would only transcribe calls long over); (3) the least recently active
call beyond ``max_calls``. Lead partials and finals are never shed: they slow the
consumer instead (backpressure onto Kafka, where the audio waits), so the work is
bounded at two whisper runs per utterance plus whatever follow-ups fit.

Bounded everywhere: at most ``max_calls`` live calls, calls idle for ``idle_s`` are
finalised and forgotten, one utterance is at most 15 s of audio, jobs wait in a
bounded queue, whisper runs in the media thread pool with a timeout.

Delivery is best-effort, like the stream itself: offsets are committed once a batch's
chunks are segmented, so a crash loses the partials of the utterances in flight; the
post-call ``transcription.completed`` (from the full recording) is the record.

Run: ``python -m services.transcription.live`` (consumer group ``transcription-live``).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

from events import Envelope, derive_id, new_envelope, trace
from services.common import audio
from services.common.config import settings
from services.lib.speech import FRAME_MS, Endpointer, SileroEndpointer, make_endpointer

from .media_stream import (FRAME_BYTES, MediaCore, MediaWorker, drop_over, header, idle, position, too_old, touch,
                           worker_settings)

GROUP = "transcription-live"
EVENT_TYPE = "transcription.partial"


@dataclass(frozen=True)
class LiveConfig:
    """Tunables; those set in the environment (CANARY_LIVE_*) are settings().live."""

    partial_first_ms: int = 800  # first partial after this much speech (+ ~0.5 s of whisper: ~1.5 s)
    partial_every_ms: int = 1000  # then one per this much more speech
    end_silence_ms: int = 700  # quiet that ends an utterance
    max_utterance_ms: int = 15_000
    threshold_db: float = -42.0
    max_calls: int = 1000
    idle_s: float = 30.0  # no chunk for this long: finalise and forget the call
    queue_size: int = 64
    concurrency: int = 1  # whisper jobs at once (each already uses CANARY_WHISPER_THREADS)
    job_timeout_s: float = 30.0
    publish_timeout_s: float = 10.0
    max_lag_s: float = 60.0  # skip chunks produced longer ago than this
    language: str | None = None
    vad: str = field(default_factory=lambda: settings().transcription.vad)  # CANARY_VAD (services/lib/speech.py)

    @classmethod
    def from_env(cls) -> "LiveConfig":
        s = settings().live
        return cls(
            partial_first_ms=s.partial_first_ms,
            partial_every_ms=s.partial_every_ms,
            end_silence_ms=s.end_silence_ms,
            language=s.language,
            **worker_settings(s),
        )


@dataclass(eq=False)
class Job:
    """One transcription to run: the utterance's audio so far (or all of it, if final)."""

    stream: "CallStream"
    utterance: int
    n: int  # partial number within the utterance; -1 for the final
    pcm: bytes
    offset_ms: int
    seq: int  # the chunk that triggered it

    @property
    def final(self) -> bool:
        return self.n < 0

    def event_id(self) -> str:
        s = self.stream
        return derive_id(f"{s.call_id}/{s.channel}/{self.seq}", f"{EVENT_TYPE}#{self.utterance}."
                         + ("final" if self.final else str(self.n)))


@dataclass(eq=False)
class CallStream:
    """Segmentation state of one call's channel. Pure: frames in, jobs out."""

    call_id: str
    account_id: str
    channel: str
    cfg: LiveConfig = field(default_factory=LiveConfig)
    language: str | None = None  # the call's transcribe_language (BCP-47, 'auto'; None: English)
    traceparent: str | None = None  # the call's trace (the chunks' header)
    tracestate: str | None = None  # and the tracestate that came with it
    last_seq: int = -1
    last_seen: float = 0.0  # monotonic time of the last chunk
    utterance: int = 0
    partials: int = 0  # partials cut for the current utterance
    queued: tuple[int, int] = (-1, -1)  # (utterance, n) of the newest partial that made it into the queue
    emitted_partial: set[int] = field(default_factory=set)  # utterances with a partial out
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # results leave in order per call
    _ep: Endpointer | SileroEndpointer | None = None
    _start_ms: int = 0  # offset of the utterance's first frame (incl. pre-roll)
    _speech_frames: int = 0  # frames since the endpointer said "started"
    _next_partial_ms: int = 0
    _cursor_ms: int = 0  # offset of the next frame

    def __post_init__(self) -> None:
        self._ep = self._endpointer()

    def _endpointer(self) -> Endpointer | SileroEndpointer:
        c = self.cfg
        return make_endpointer(c.vad, threshold_db=c.threshold_db, end_silence_ms=c.end_silence_ms,
                               max_ms=c.max_utterance_ms)

    @property
    def speaking(self) -> bool:
        return bool(self._ep and self._ep.started and not self._ep.ended)

    def feed(self, pcm: bytes, offset_ms: int | None, seq: int) -> list[Job]:
        """One chunk (any number of 20 ms frames). Duplicates (seq seen) are ignored."""
        if seq <= self.last_seq:
            return []
        self.last_seq = seq
        if offset_ms is not None:
            self._cursor_ms = offset_ms  # trust the sender's clock: it counts dropped chunks
        jobs: list[Job] = []
        for i in range(0, len(pcm) - 1, FRAME_BYTES):
            frame = pcm[i:i + FRAME_BYTES]
            t = self._cursor_ms
            self._cursor_ms += len(frame) // 16
            ep = self._ep
            r = ep.feed(frame)
            if r == "started":
                self._start_ms = max(0, t - (len(ep.frames) - 1) * FRAME_MS)
                self._speech_frames = 0
                self._next_partial_ms = self.cfg.partial_first_ms
                self.partials = 0
            if r == "ended":
                jobs.append(self._final(seq))
            elif ep.started:
                self._speech_frames += 1
                # Due partials wait for sound: a pause brings no new words to transcribe.
                if self._speech_frames * FRAME_MS >= self._next_partial_ms and \
                        audio.rms_dbfs(frame) > self.cfg.threshold_db:
                    jobs.append(Job(self, self.utterance, self.partials, ep.audio(), self._start_ms, seq))
                    self.partials += 1
                    self._next_partial_ms = self._speech_frames * FRAME_MS + self.cfg.partial_every_ms
        return jobs

    def flush(self, seq: int | None = None) -> list[Job]:
        """End of stream (or eviction): finalise an utterance in progress."""
        if not self.speaking:
            return []
        return [self._final(self.last_seq if seq is None else seq)]

    def _final(self, seq: int) -> Job:
        job = Job(self, self.utterance, -1, self._ep.audio(), self._start_ms, seq)
        self.utterance += 1
        self.partials = 0
        self._ep = self._endpointer()
        return job

    def lead(self, job: Job) -> bool:
        """A partial of an utterance with no partial out yet: the one a client waits for."""
        return not job.final and job.utterance not in self.emitted_partial

    def stale(self, job: Job) -> bool:
        """A follow-up partial superseded by a newer partial or the final of its utterance.

        A lead partial is never stale: without it a slow machine would show no live text
        until the speaker stops (the final overtakes every partial still in whisper).
        """
        if job.final or self.lead(job):
            return False
        return self.utterance > job.utterance or self.queued > (job.utterance, job.n)


class LiveTranscription(MediaCore):
    """Everything except Kafka: call streams, the job queue, whisper, the events.

    ``emit`` publishes one envelope (awaited, so a slow broker slows the workers,
    not memory). ``transcriber`` needs ``transcribe(pcm8k, language) -> Transcript``
    (blocking; it runs in the media pool).
    """

    def __init__(self, emit: Callable[[Envelope], Awaitable[None]], transcriber: Any = None,
                 cfg: LiveConfig | None = None, log: Any = None) -> None:
        super().__init__(emit, transcriber, cfg or LiveConfig(), log,
                         {"emitted": 0, "dropped_partials": 0, "stale_partials": 0, "dropped_finals": 0,
                          "evicted": 0, "failed": 0})
        self.calls: OrderedDict[tuple[str, str], CallStream]  # (call_id, channel) -> its stream
        self.queue: asyncio.Queue[Job]

    # --- input ----------------------------------------------------------------------

    def accept(self, key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]] | None,
               timestamp_ms: int | None = None, now: float | None = None) -> list[Job]:
        """One voice.media.audio record -> the jobs it triggers (not yet queued)."""
        now = time.monotonic() if now is None else now
        call_id = key.decode("utf-8", "replace") if key else ""
        account_id = header(headers, "account_id")
        if not call_id or not account_id:
            self.stats["skipped"] += 1
            return []
        purpose = header(headers, "purpose")
        if purpose is not None and "transcribe" not in purpose.split():
            self.stats["other_purpose"] += 1  # streamed for a speech gather only: not ours
            return []
        if too_old(timestamp_ms, self.cfg.max_lag_s):
            self.stats["stale_chunks"] += 1
            return []
        channel = header(headers, "channel") or "callee"
        try:
            seq, offset_ms = position(headers)
        except ValueError:
            self.stats["skipped"] += 1
            return []
        final = header(headers, "final") == "1"
        k = (call_id, channel)
        s = self.calls.get(k) or CallStream(call_id, account_id, channel, self.cfg,
                                            language=header(headers, "language") or self.cfg.language,
                                            traceparent=header(headers, "traceparent"),
                                            tracestate=header(headers, "tracestate"))
        touch(self.calls, k, s, now)
        self.stats["chunks"] += 1
        jobs = s.feed(value or b"", offset_ms, seq)
        if final:
            jobs += s.flush(seq)
            self.calls.pop(k, None)
        for old in drop_over(self.calls, self.cfg.max_calls):  # the least recently active call goes
            self.stats["evicted"] += 1
            if self.log:
                self.log.warning("live call dropped: too many live calls", call_id=old.call_id)
        return jobs

    def evict_idle(self, now: float | None = None) -> list[Job]:
        """Finalise and forget calls that sent nothing for ``idle_s`` (lost final chunk)."""
        now = time.monotonic() if now is None else now
        jobs: list[Job] = []
        for s in idle(self.calls, now, self.cfg.idle_s):
            jobs += s.flush()
            self.stats["evicted"] += 1
        return jobs

    async def submit(self, job: Job) -> None:
        """Queue a job: a follow-up partial that does not fit is dropped; a final, and the
        first partial of an utterance, wait for room (the consumer slows down instead)."""
        s = job.stream
        if not job.final and job.n > 0:  # the first partial (n == 0) always leads
            try:
                self.queue.put_nowait(job)
                s.queued = (job.utterance, job.n)
            except asyncio.QueueFull:
                self.stats["dropped_partials"] += 1
            return
        try:
            try:
                self.queue.put_nowait(job)
            except asyncio.QueueFull:
                await asyncio.wait_for(self.queue.put(job), self.cfg.job_timeout_s)
        except asyncio.TimeoutError:
            self.stats["dropped_finals" if job.final else "dropped_partials"] += 1
            if self.log:
                self.log.warning("transcription dropped: queue full", call_id=s.call_id, final=job.final)
            return
        if not job.final:
            s.queued = (job.utterance, job.n)

    # --- work -----------------------------------------------------------------------

    async def process(self, job: Job) -> Envelope | None:
        """Transcribe one job and emit its event (None when skipped or failed)."""
        s = job.stream
        # FIFO queue + a fair lock taken right after dequeuing: results leave per call in order.
        async with s.lock:
            if s.stale(job):
                self.stats["stale_partials"] += 1
                return None
            try:
                t = await asyncio.wait_for(audio.run_blocking(self.transcriber.transcribe, job.pcm, s.language),
                                           self.cfg.job_timeout_s)
                text = t.text.strip()
            except Exception as exc:  # a whisper failure costs one result, never the worker
                self.stats["failed"] += 1
                if self.log:
                    self.log.warning("live transcription failed", call_id=s.call_id,
                                     error=f"{type(exc).__name__}: {exc}")
                return None
            if not text and not (job.final and job.utterance in s.emitted_partial):
                return None  # noise: nothing to say (a final still closes an utterance with partials out)
            if not job.final and s.stale(job):
                self.stats["stale_partials"] += 1  # the final overtook it while whisper ran
                return None
            env = self.event(job, text)
            try:
                await asyncio.wait_for(self.emit(env), self.cfg.publish_timeout_s)
            except Exception as exc:
                self.stats["failed"] += 1
                if self.log:
                    self.log.warning("live transcription not published", call_id=s.call_id, error=str(exc))
                return None
            if not job.final:
                s.emitted_partial.add(job.utterance)
            else:
                s.emitted_partial.discard(job.utterance)
            self.stats["emitted"] += 1
            return env

    @staticmethod
    def event(job: Job, text: str) -> Envelope:
        s = job.stream
        return new_envelope(EVENT_TYPE, s.call_id, s.account_id, {
            "text": text, "offset_ms": job.offset_ms, "channel": s.channel, "final": job.final,
            "utterance": job.utterance, "duration_ms": len(job.pcm) // 16,
        }, id=job.event_id(), traceparent=trace.continued(s.traceparent, f"live/{s.call_id}/{s.channel}"),
            tracestate=trace.continued_state(s.traceparent, s.tracestate))


class LiveWorker(MediaWorker):
    """The Kafka edge: consume voice.media.audio, run :class:`LiveTranscription`, publish events.

    Offsets are committed past each batch (best-effort stream)."""

    GROUP = GROUP

    def make_core(self) -> LiveTranscription:
        return LiveTranscription(self._publish, cfg=LiveConfig.from_env(), log=self.log)

    def offset_reset(self) -> str:
        return settings().live.offset_reset

    async def handle(self, tp: Any, m: Any) -> None:
        for job in self.core.accept(m.key, m.value, m.headers, m.timestamp):
            await self.core.submit(job)

    async def sweep(self) -> None:
        for job in self.core.evict_idle():
            await self.core.submit(job)


async def main() -> None:
    await LiveWorker.serve()


if __name__ == "__main__":
    asyncio.run(main())
