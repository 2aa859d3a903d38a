"""Live events for the Server-Sent Events endpoints: one Kafka reader per API process, many followers.

`GET /v1/voice/calls/{id}/events?follow=true` and `GET /v1/voice/events?follow=true`
follow `voice.call.events` as it is written. Each API process reads the topic once, only
while someone follows (the reader starts with the first follower and stops a while after
the last leaves), and hands every event to the followers of its account (or its call).

Nothing is lost between what a follower reads from Postgres (the projected timeline) and
what it gets live, although the projector writes a little behind the log: the hub keeps
the last `window_s` of events in memory (bounded), and a new follower gets that recent
past, then the live events; the call stream merges it with the projected timeline and
drops what it has already sent, by event id.

Bounded everywhere: a follower's queue holds `queue_size` events; one that cannot keep up
is cut off (`overflowed`: the stream ends with a `gap` event and the client resumes with
Last-Event-ID), never slowing the others or the reader.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from events import Envelope, decode
from events import topics
from events.catalog import TERMINAL_EVENTS
from services.common.kafka import make_consumer, topic_partitions
from services.common.logging import get_logger

log = get_logger(service="api")


@dataclass(eq=False)
class Follower:
    """One open stream: the events of an account, or of one of its calls."""

    account_id: str
    call_id: str | None
    queue: asyncio.Queue[Envelope | None]  # None: wake up and look at `overflowed`
    overflowed: bool = False

    def wants(self, env: Envelope) -> bool:
        return env.account_id == self.account_id and (self.call_id is None or env.call_id == self.call_id)


@dataclass
class EventHub:
    """The process's reader of `voice.call.events` and its followers."""

    queue_size: int = 1000
    window_s: float = 300.0  # how far back a new follower (a resume) is served from memory
    window_max: int = 50_000
    idle_stop_s: float = 30.0
    backfill_s: float = 30.0  # how far back the reader starts (longer than the projector lags)
    max_followers: int = 2000
    per_account: int = 20
    followers: set[Follower] = field(default_factory=set)
    _recent: collections.deque = field(default_factory=collections.deque)  # (monotonic, Envelope)
    _task: asyncio.Task | None = None
    _ready: asyncio.Event | None = None
    _idle_since: float | None = None

    def count(self, account_id: str) -> int:
        return sum(1 for f in self.followers if f.account_id == account_id)

    async def follow(self, account_id: str, call_id: str | None = None, timeout: float = 10.0) -> Follower:
        """Register a follower once the reader has its position, so every event written from
        now on reaches it; raises TimeoutError if Kafka cannot be read."""
        f = Follower(account_id, call_id, asyncio.Queue(self.queue_size))
        self.followers.add(f)
        self._idle_since = None
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.create_task(self._read(), name="live-events")
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except BaseException:
            self.leave(f)
            raise
        return f

    def recent(self, f: Follower) -> list[Envelope]:
        """The follower's events of the last `window_s`, oldest first (what Postgres may lack yet)."""
        return [env for _, env in self._recent if f.wants(env)]

    def leave(self, f: Follower) -> None:
        self.followers.discard(f)
        if not self.followers:
            self._idle_since = time.monotonic()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _deliver(self, env: Envelope) -> None:
        now = time.monotonic()
        recent = self._recent
        recent.append((now, env))
        while recent and (len(recent) > self.window_max or recent[0][0] < now - self.window_s):
            recent.popleft()
        for f in self.followers:
            if not f.overflowed and f.wants(env):
                try:
                    f.queue.put_nowait(env)
                except asyncio.QueueFull:
                    self._cut(f)

    @staticmethod
    def _cut(f: Follower) -> None:
        """End a follower's stream with a gap (it fell behind, or the reader failed)."""
        f.overflowed = True
        if f.queue.full():
            f.queue.get_nowait()
        f.queue.put_nowait(None)

    async def _pull(self, consumer, timeout_ms: int) -> None:
        for records in (await consumer.getmany(timeout_ms=timeout_ms, max_records=2000)).values():
            for rec in records:
                env = decode(rec.value)
                if isinstance(env, Envelope):  # what cannot be read is the DLQ's business
                    self._deliver(env)

    async def _read(self) -> None:
        topic = topics.events()
        consumer = make_consumer(group_id=None, auto_offset_reset="latest", isolation_level="read_uncommitted",
                                 client_id="canary-api-live")
        try:
            await consumer.start()
            parts = await topic_partitions(consumer, topic)
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            # Start `backfill_s` back: what was written just before the first follower came
            # may not be in Postgres yet (the projector writes behind the log), so the recent
            # window must hold it. Ready once caught up with the log's end as of now.
            ends = await consumer.end_offsets(tps)
            since = await consumer.offsets_for_times({tp: int((time.time() - self.backfill_s) * 1000) for tp in tps})
            for tp in tps:
                at = since.get(tp)
                consumer.seek(tp, at.offset if at is not None else ends[tp])
            while not all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                await self._pull(consumer, 200)
            self._ready.set()
            while self._idle_since is None or time.monotonic() - self._idle_since < self.idle_stop_s:
                await self._pull(consumer, 500)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("live_events_reader_failed", error=repr(exc))
            for f in self.followers:  # each stream ends; its client resumes with Last-Event-ID
                self._cut(f)
        finally:
            self._recent.clear()
            await consumer.stop()


# After its terminal event a call still has its recording and transcript to come: the
# call's stream ends once what was started has finished. The gateway writes a call's
# `recording.captured` just before its terminal event, so a call that ended without one
# has no recording coming.
_ENDS = (*TERMINAL_EVENTS, "call.rejected")
_RECORDING_ENDS = ("recording.completed", "recording.failed")
_TRANSCRIPT_ENDS = ("transcription.completed", "transcription.failed")


def call_stream_done(seen: dict[str, dict]) -> bool:
    """True once a call has nothing more to say: it ended, and the recording captured (and
    its transcript, when asked) finished. `seen`: type -> data of the last event of each type."""
    if not any(t in seen for t in _ENDS):
        return False
    if "recording.captured" not in seen or "recording.failed" in seen:
        return True
    done = seen.get("recording.completed")
    if done is None:
        return False
    return not done.get("transcribe") or any(t in seen for t in _TRANSCRIPT_ENDS)
