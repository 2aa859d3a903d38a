"""What the ``voice.media.audio`` workers share: reading a chunk's headers, the per-call
stream table, and the Kafka edge.

``live.py`` (``transcription.partial``) and ``speech_gather.py``
(``speech.recognized``) both consume the gateway's audio chunks (key = call_id;
headers account_id, channel, seq, offset_ms, final, purpose, gather; see
``services/telephony/streaming.py``). Each keeps its own segmentation and results;
this module holds only the plumbing around them.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Iterable

from events import Envelope, topics
from services.common import audio
from services.common.consumer import KafkaCommits
from services.common.health import HEALTH
from services.lib.speech import FRAME_MS

FRAME_BYTES = audio.SAMPLE_RATE * FRAME_MS // 1000 * audio.SAMPLE_WIDTH  # 320

Headers = Iterable[tuple[str, bytes]] | None


def worker_settings(s: Any) -> dict[str, Any]:
    """The tunables every media worker reads from its settings section."""
    return {"max_calls": s.max_calls, "idle_s": s.idle_s, "queue_size": s.queue_size,
            "concurrency": max(1, s.concurrency), "job_timeout_s": s.job_timeout_s, "max_lag_s": s.max_lag_s}


def header_bytes(headers: Headers, name: str) -> bytes | None:
    """The raw value of a chunk's header ``name`` (None when absent)."""
    for k, v in headers or ():
        if k == name:
            return v if isinstance(v, (bytes, bytearray)) else str(v).encode()
    return None


def header(headers: Headers, name: str) -> str | None:
    """The value of a chunk's header ``name`` as text (None when absent)."""
    v = header_bytes(headers, name)
    return None if v is None else v.decode("utf-8", "replace")


def position(headers: Headers) -> tuple[int, int | None]:
    """(seq, offset_ms) of a chunk; raises ValueError on a malformed header."""
    seq = int(header(headers, "seq") or 0)
    off = header(headers, "offset_ms")
    return seq, (int(off) if off is not None else None)


def too_old(timestamp_ms: int | None, max_lag_s: float) -> bool:
    """A chunk produced longer than ``max_lag_s`` ago (0 disables the cut-off)."""
    return bool(timestamp_ms) and max_lag_s > 0 and time.time() * 1000 - timestamp_ms > max_lag_s * 1000


def touch(calls: OrderedDict, key: Any, stream: Any, now: float) -> None:
    """Mark a call's stream as the most recently active one."""
    calls[key] = stream
    calls.move_to_end(key)
    stream.last_seen = now


def drop_over(calls: OrderedDict, limit: int) -> list[Any]:
    """Forget the least recently active streams beyond ``limit``; returns them."""
    dropped = []
    while len(calls) > limit:
        dropped.append(calls.popitem(last=False)[1])
    return dropped


def idle(calls: OrderedDict, now: float, idle_s: float) -> list[Any]:
    """Forget the streams that got no chunk for ``idle_s``; returns them."""
    return [calls.pop(k) for k in [k for k, s in calls.items() if now - s.last_seen > idle_s]]


class MediaCore:
    """What a worker's core shares (everything except Kafka): ``emit``, the call streams
    (LRU by activity), the bounded job queue, the transcriber (loaded on first use) and
    the loop of a whisper worker. A core adds ``accept`` and ``process``.
    """

    def __init__(self, emit: Callable[[Envelope], Awaitable[None]], transcriber: Any, cfg: Any, log: Any,
                 stats: dict[str, int]) -> None:
        self.emit = emit
        self._transcriber = transcriber
        self.cfg = cfg
        self.log = log
        self.calls: OrderedDict[Any, Any] = OrderedDict()
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=cfg.queue_size)
        self.stats = {"chunks": 0, "skipped": 0, "other_purpose": 0, "stale_chunks": 0, **stats}

    @property
    def transcriber(self) -> Any:
        if self._transcriber is None:
            from .engine import get_transcriber

            self._transcriber = get_transcriber()
        return self._transcriber

    async def work(self) -> None:
        """One worker: take jobs until cancelled."""
        while True:
            job = await self.queue.get()
            try:
                await self.process(job)
            finally:
                self.queue.task_done()

    async def process(self, job: Any) -> Any:
        raise NotImplementedError


class MediaWorker:
    """The Kafka edge of a media worker: consume voice.media.audio, hand each record to
    the core (``handle``), commit, sweep idle streams once a second, stop.

    The core is a :class:`MediaCore`.
    """

    GROUP = ""
    PRODUCER: dict[str, Any] = {}  # make_producer options

    def __init__(self, core: Any = None, *, group_id: str | None = None, log: Any = None) -> None:
        from services.common.logging import get_logger

        self.log = log or get_logger(service=self.GROUP)
        self.core = core or self.make_core()
        self.group_id = group_id or topics.scoped(self.GROUP)
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    # --- what a worker adds ---------------------------------------------------------

    @property
    def trace_name(self) -> str:
        """This worker's name in the trace ids it derives (services/common/service.py)."""
        return self.GROUP

    def make_core(self) -> Any:
        raise NotImplementedError

    def offset_reset(self) -> str:
        raise NotImplementedError

    async def handle(self, tp: Any, m: Any) -> None:
        """One record: accept it and submit what it triggers."""
        raise NotImplementedError

    async def sweep(self) -> None:
        """Once a second: deal with idle streams."""

    def next_offsets(self, batches: dict[Any, list[Any]]) -> dict[Any, int]:
        """partition -> offset to commit after a batch: past its last record."""
        return {tp: msgs[-1].offset + 1 for tp, msgs in batches.items() if msgs}

    # --- the edge -------------------------------------------------------------------

    @classmethod
    async def serve(cls) -> None:
        """Run one worker as a service (logging, health, signals)."""
        from services.common.logging import configure
        from services.common.service import serve

        log = configure(cls.GROUP)
        w = cls(log=log)
        await serve(w, log, "worker", lambda: dict(w.core.stats))

    async def _publish(self, env: Envelope) -> None:
        from services.common.kafka import publish

        await publish(self.producer, topics.EVENTS, env)

    async def start(self) -> None:
        from services.common.kafka import make_consumer, make_producer

        self.producer = make_producer(**self.PRODUCER)
        await self.producer.start()
        # "earliest" so a chunk sent while the group is still joining is not lost; the
        # max_lag_s cut-off keeps a brand-new group from working on old audio.
        self.consumer = make_consumer(topics.MEDIA_AUDIO, group_id=self.group_id, max_poll_records=500,
                                      auto_offset_reset=self.offset_reset())
        await self.consumer.start()
        self.commits = KafkaCommits(self.consumer, self.log)
        self.tasks = [asyncio.create_task(self.core.work()) for _ in range(self.core.cfg.concurrency)]
        self.tasks.append(asyncio.create_task(self._sweep()))
        # Load the model now, not on the first caller's first words.
        load = getattr(self.core.transcriber, "_load", None)
        if load is not None:
            self.tasks.append(asyncio.create_task(audio.run_blocking(load)))
        self.log.info("worker started", topic=topics.MEDIA_AUDIO, group=self.group_id)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self.sweep()

    async def run_once(self, timeout_ms: int = 200) -> int:
        batches = await self.consumer.getmany(timeout_ms=timeout_ms)
        seen = 0
        for tp, msgs in batches.items():
            for m in msgs:
                await self.handle(tp, m)
            seen += len(msgs)
        if batches:  # in the background: the next owner re-reads at most that much, ids dedupe
            self.commits.note({(tp.topic, tp.partition): off for tp, off in self.next_offsets(batches).items()})
        return seen

    async def run(self) -> None:
        while not self.stopping.is_set():
            HEALTH.alive()
            await self.run_once()

    async def stop(self) -> None:
        # Finish what is queued (finals, answers of calls that just ended), briefly.
        try:
            await asyncio.wait_for(self.core.queue.join(), 5.0)
        except asyncio.TimeoutError:
            pass
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.commits.close()
        await self.consumer.stop()
        await self.producer.stop()
