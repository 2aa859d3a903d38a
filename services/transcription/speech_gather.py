"""Speech gather recognition: ``voice.media.audio`` -> ``speech.recognized`` events.

While a speech gather is open the gateway streams the callee's audio with
``purpose`` ``gather`` and a ``gather`` header (JSON ``{"id", "step", "hints",
"language"}``, id = the gather.requested event's id; see
``services/telephony/streaming.py``). The gateway runs no speech recogniser: this
worker does what it used to do in-process, per call's open gather:

- the chunks are cut into 20 ms frames and fed to the endpointer
  (``services.lib.speech``: the Silero VAD, or the energy one with CANARY_VAD=energy; counted in frames, so an
  accelerated sandbox call endpoints like a real one): the first utterance of the
  gather, from speech start to 800 ms of quiet (or the 15 s cap), is the answer;
- whisper transcribes it (in the media pool, with a timeout) and ``best_hint`` picks
  the gather's closest expected phrase;
- the result is one ``speech.recognized`` event on ``voice.call.events``: ``{gather_id,
  step, text, confidence, matched_hint?, error?, language, offset_ms, duration_ms}``.
  The gateway completes the gather with it (``gather.completed`` with ``speech``); a
  result for a gather that already ended (DTMF, timeout, hangup) is ignored there.

A failed or timed-out whisper run is still a result (empty text, ``error``), as it was
in the gateway. A result that never comes (worker down, audio lost) is the gateway's
business: its gather timer ends the gather as ``gather.timeout``.

Ids are deterministic: ``derive_id("<call_id>/gather/<gather_id>", "speech.recognized")``,
so re-reading the stream re-emits the same id. Offsets are committed up to the first
chunk of the oldest gather not yet answered (at most ``idle_s`` of audio), so a worker
that crashes mid-utterance re-reads it on restart and answers the same gather again.

Bounded: at most ``max_calls`` open gathers (least recently active dropped first), a
gather's stream is forgotten after ``idle_s`` without a chunk (the gateway stops
streaming when the gather ends), chunks older than ``max_lag_s`` are skipped, jobs
wait in a bounded queue (a full queue slows the consumer: results are never shed).

Run: ``python -m services.transcription.speech_gather`` (consumer group ``transcription-gather``).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

import orjson

from events import Envelope, derive_id, new_envelope, trace
from services.common import audio
from services.common.config import settings
from services.lib.speech import FRAME_MS, Endpointer, SileroEndpointer, best_hint, make_endpointer

from .media_stream import (FRAME_BYTES, MediaCore, MediaWorker, drop_over, header, header_bytes, idle, position,
                           too_old, touch, worker_settings)

GROUP = "transcription-gather"
EVENT_TYPE = "speech.recognized"


@dataclass(frozen=True)
class GatherConfig:
    """Tunables; those set in the environment (CANARY_GATHER_*) are settings().gather."""

    max_calls: int = 1000
    idle_s: float = 10.0  # no chunk of an open gather for this long: forget it
    queue_size: int = 64
    concurrency: int = 1  # whisper jobs at once (each already uses CANARY_WHISPER_THREADS)
    job_timeout_s: float = 15.0  # below the gateway's 20 s wait, so a failure is still reported in time
    publish_timeout_s: float = 10.0
    max_lag_s: float = 30.0  # skip chunks produced longer ago (the gateway gave up on them)

    @classmethod
    def from_env(cls) -> "GatherConfig":
        s = settings().gather
        return cls(**worker_settings(s))


@dataclass(eq=False)
class GatherStream:
    """Endpointing state of one call's open speech gather. Pure: frames in, one utterance out."""

    call_id: str
    account_id: str
    gather_id: str
    step: str | None = None
    hints: list[str] = field(default_factory=list)
    language: str | None = None
    first_pos: tuple[Any, int] | None = None  # (partition, offset) of its first chunk, for commits
    traceparent: str | None = None  # the call's trace (the chunks' header)
    tracestate: str | None = None  # and the tracestate that came with it
    last_seq: int = -1
    last_seen: float = 0.0
    answered: bool = False  # its utterance was cut (a job is queued or done)
    _ep: Endpointer | SileroEndpointer = field(
        default_factory=lambda: make_endpointer(settings().transcription.vad))
    _start_ms: int = 0
    _cursor_ms: int = 0

    def feed(self, pcm: bytes, offset_ms: int | None, seq: int) -> "Job | None":
        """One chunk; the job for the gather's utterance once the endpointer ends it."""
        if seq <= self.last_seq or self.answered:
            return None
        self.last_seq = seq
        if offset_ms is not None:
            self._cursor_ms = offset_ms  # trust the sender's clock: it counts audio not streamed
        ep = self._ep
        for i in range(0, len(pcm) - 1, FRAME_BYTES):
            frame = pcm[i:i + FRAME_BYTES]
            t = self._cursor_ms
            self._cursor_ms += len(frame) // 16
            r = ep.feed(frame)
            if r == "started":
                self._start_ms = max(0, t - (len(ep.frames) - 1) * FRAME_MS)
            elif r == "ended":
                self.answered = True
                return Job(self, ep.audio(), self._start_ms, time.monotonic())
        return None


@dataclass(eq=False)
class Job:
    stream: GatherStream
    pcm: bytes
    offset_ms: int
    cut_at: float  # monotonic time the utterance was endpointed

    def event_id(self) -> str:
        s = self.stream
        return derive_id(f"{s.call_id}/gather/{s.gather_id}", EVENT_TYPE)


class SpeechGather(MediaCore):
    """Everything except Kafka: open gathers, the job queue, whisper, the events.

    ``emit`` publishes one envelope (awaited). ``transcriber`` needs
    ``transcribe(pcm8k, language) -> Transcript`` (blocking; it runs in the media pool).
    """

    def __init__(self, emit: Callable[[Envelope], Awaitable[None]], transcriber: Any = None,
                 cfg: GatherConfig | None = None, log: Any = None) -> None:
        super().__init__(emit, transcriber, cfg or GatherConfig(), log, {"recognized": 0, "failed": 0, "evicted": 0})
        self.calls: OrderedDict[str, GatherStream]  # call_id -> its open gather
        self.queue: asyncio.Queue[Job]

    # --- input ----------------------------------------------------------------------

    def accept(self, key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]] | None,
               timestamp_ms: int | None = None, now: float | None = None,
               pos: tuple[Any, int] | None = None) -> Job | None:
        """One voice.media.audio record -> the job it triggers, if any (not yet queued)."""
        now = time.monotonic() if now is None else now
        call_id = key.decode("utf-8", "replace") if key else ""
        account_id = header(headers, "account_id")
        if not call_id or not account_id:
            self.stats["skipped"] += 1
            return None
        if header(headers, "final") == "1":
            self.calls.pop(call_id, None)  # the call is over: so is its gather
            return None
        raw = header_bytes(headers, "gather")
        if raw is None or "gather" not in (header(headers, "purpose") or "").split():
            self.stats["other_purpose"] += 1
            self.calls.pop(call_id, None)  # no gather open any more
            return None
        if too_old(timestamp_ms, self.cfg.max_lag_s):
            self.stats["stale_chunks"] += 1
            return None
        try:
            g = orjson.loads(raw)
            gather_id = str(g["id"])
            seq, offset_ms = position(headers)
        except (ValueError, KeyError, TypeError):
            self.stats["skipped"] += 1
            return None
        s = self.calls.get(call_id)
        if s is None or s.gather_id != gather_id:
            hints = g.get("hints") if isinstance(g.get("hints"), list) else []
            s = GatherStream(call_id, account_id, gather_id, step=g.get("step"),
                             hints=[str(h) for h in hints], language=g.get("language") or None, first_pos=pos,
                             traceparent=header(headers, "traceparent"), tracestate=header(headers, "tracestate"))
        touch(self.calls, call_id, s, now)
        self.stats["chunks"] += 1
        job = s.feed(value or b"", offset_ms, seq)
        for old in drop_over(self.calls, self.cfg.max_calls):
            self.stats["evicted"] += 1
            if self.log:
                self.log.warning("speech gather dropped: too many open gathers", call_id=old.call_id)
        return job

    def evict_idle(self, now: float | None = None) -> int:
        """Forget gathers that got no chunk for ``idle_s`` (the gateway closed them)."""
        now = time.monotonic() if now is None else now
        return len(idle(self.calls, now, self.cfg.idle_s))

    def holds(self) -> dict[Any, int]:
        """partition -> offset of the first chunk of the oldest gather not answered yet."""
        out: dict[Any, int] = {}
        for s in self.calls.values():
            if not s.answered and s.first_pos is not None:
                tp, off = s.first_pos
                out[tp] = min(out.get(tp, off), off)
        return out

    async def submit(self, job: Job) -> None:
        """Queue a job, waiting for room (a result is never shed: the consumer slows down)."""
        await self.queue.put(job)

    # --- work -----------------------------------------------------------------------

    async def process(self, job: Job) -> Envelope | None:
        """Recognise one utterance and emit its result (None only if publishing failed)."""
        s = job.stream
        t0 = time.monotonic()
        error = None
        try:
            t = await asyncio.wait_for(audio.run_blocking(self.transcriber.transcribe, job.pcm, s.language),
                                       self.cfg.job_timeout_s)
            text, confidence, language = t.text.strip(), round(float(t.confidence), 3), t.language or s.language
        except Exception as exc:  # a whisper failure is an answer too: the gather completes with the error
            self.stats["failed"] += 1
            if self.log:
                self.log.error("speech recognition failed", call_id=s.call_id, error=f"{type(exc).__name__}: {exc}")
            text, confidence, language, error = "", 0.0, s.language, "recognition failed"
        whisper_ms = (time.monotonic() - t0) * 1000
        env = self.event(job, text, confidence, language, error)
        try:
            await asyncio.wait_for(self.emit(env), self.cfg.publish_timeout_s)
        except Exception as exc:
            self.stats["failed"] += 1
            if self.log:
                self.log.warning("speech result not published", call_id=s.call_id, error=str(exc))
            return None
        self.stats["recognized"] += 1
        if self.log:
            self.log.info("speech recognized", call_id=s.call_id, gather_id=s.gather_id,
                          queued_ms=round((t0 - job.cut_at) * 1000, 1), whisper_ms=round(whisper_ms, 1),
                          matched_hint=env.data.get("matched_hint"), chars=len(text))
        return env

    @staticmethod
    def event(job: Job, text: str, confidence: float, language: str | None, error: str | None) -> Envelope:
        s = job.stream
        data: dict[str, Any] = {"gather_id": s.gather_id, "step": s.step, "text": text, "confidence": confidence,
                                "language": language, "offset_ms": job.offset_ms,
                                "duration_ms": len(job.pcm) // 16}
        hint = best_hint(text, s.hints)
        if hint is not None:
            data["matched_hint"] = hint
        if error is not None:
            data["error"] = error
        return new_envelope(EVENT_TYPE, s.call_id, s.account_id, data, id=job.event_id(), causation_id=s.gather_id,
                            traceparent=trace.continued(s.traceparent, f"gather/{s.gather_id}"),
                            tracestate=trace.continued_state(s.traceparent, s.tracestate))


class SpeechGatherWorker(MediaWorker):
    """The Kafka edge: consume voice.media.audio, run :class:`SpeechGather`, publish events.

    Offsets are committed no further than the first chunk of the oldest open gather."""

    GROUP = GROUP
    PRODUCER = {"linger_ms": 1}  # a caller is waiting for this answer

    def make_core(self) -> SpeechGather:
        return SpeechGather(self._publish, cfg=GatherConfig.from_env(), log=self.log)

    def offset_reset(self) -> str:
        return settings().gather.offset_reset

    async def handle(self, tp: Any, m: Any) -> None:
        job = self.core.accept(m.key, m.value, m.headers, m.timestamp, pos=(tp, m.offset))
        if job is not None:
            await self.core.submit(job)

    async def sweep(self) -> None:
        self.core.stats["evicted"] += self.core.evict_idle()

    def next_offsets(self, batches: dict[Any, list[Any]]) -> dict[Any, int]:
        holds = self.core.holds()
        return {tp: min(off, holds.get(tp, 1 << 62)) for tp, off in super().next_offsets(batches).items()}


async def main() -> None:
    await SpeechGatherWorker.serve()


if __name__ == "__main__":
    asyncio.run(main())
