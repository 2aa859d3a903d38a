"""The webhook worker: Kafka intake -> Postgres outbox -> signed HTTP deliveries.

Two loops share one process:
- intake reads voice.call.events (own consumer group), writes deliveries keyed by
  event id (a redelivered record inserts nothing), then commits the Kafka offsets:
  a crash between the two re-reads the batch, harmlessly;
- the dispatcher leases due deliveries (only the oldest pending one per call, so a
  call's webhooks arrive in order), posts them with bounded, fair concurrency and
  records every attempt. Retries wait in Postgres (next_attempt_at), so a restart
  picks them up; a crashed worker's lease simply expires.
After `max_attempts` (or at once for a URL the SSRF guard refuses) the delivery is
dead-lettered: a record on voice.dlq with the reason, and status `failed` in the table.

Flow `webhook` steps (``flow.webhook.requested``) are asked of the app by tasks, at most
``flow_in_flight`` at once (the intake waits for a free slot), and a partition's committed
offset never passes a request whose answer is not yet on the log: a restart asks again
(the answer's id is derived from the request, so consumers dedupe a repeated one).
"""

from __future__ import annotations

import asyncio
import bisect
import time

import asyncpg
import structlog
from aiokafka import TopicPartition

from events import topics
from events import trace
from services.common import config, db, metrics, tracing
from services.common.consumer import KafkaCommits, Rejected, Skipped, Source, Stopped, retry_transient
from services.common.health import HEALTH
from services.common.kafka import dlq_record, make_consumer, make_producer, publish
from services.common.logging import configure
from services.common.service import serve
from services.webhooks import sender, store
from services.webhooks.payloads import WEBHOOK_TYPES
from services.webhooks.policy import Lanes, WebhookSettings, backoff

log = configure("webhooks")


class WebhookWorker:
    def __init__(self, topic: str | None = None, group_id: str | None = None,
                 settings: WebhookSettings | None = None, dlq_topic: str | None = None):
        self.topic = topic or topics.events()
        self.dlq_topic = dlq_topic or topics.dlq()
        self.group_id = group_id or topics.scoped("webhooks")
        self.s = settings or config.settings().webhooks  # read once: the loop uses self.s
        self.lanes = Lanes(self.s)
        self.routes = store.RouteCache()
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()
        # Flow-webhook requests: a bounded number in flight, and per partition the offsets of
        # those whose answer is not on the log yet (sorted) and how far the intake has read.
        self.flow_slots = asyncio.Semaphore(max(1, self.s.flow_in_flight))
        self.flow_in_flight = 0
        self._unanswered: dict[tuple[str, int], list[int]] = {}
        self._read_upto: dict[tuple[str, int], int] = {}
        self._secrets: dict[str, tuple[float, str | None]] = {}
        self.stats = {"enqueued": 0, "delivered": 0, "retried": 0, "failed": 0}

    async def start(self) -> None:
        self.pool: asyncpg.Pool = await db.create_pool(min_size=1, max_size=8)
        self.producer = make_producer()
        await self.producer.start()
        self.source = Source(self.topic, types=frozenset(WEBHOOK_TYPES) | {"flow.webhook.requested"})
        self.consumer = make_consumer(self.topic, group_id=self.group_id, max_poll_records=1000)
        await self.consumer.start()
        self.commits = KafkaCommits(self.consumer, log)
        self.client = sender.make_client(self.s.concurrency + self.s.slow_lane)
        log.info("webhooks started", topic=self.topic, group=self.group_id, max_attempts=self.s.max_attempts,
                 concurrency=self.s.concurrency)

    async def stop(self) -> None:
        self.stopping.set()
        if self.tasks:  # let in-flight attempts finish and record (bounded by the attempt timeout)
            await asyncio.wait(self.tasks, timeout=self.s.timeout + 2)
        await self.commits.close()
        await self.consumer.stop()
        await self.producer.stop()
        await self.client.aclose()
        await self.pool.close()

    # --- intake ------------------------------------------------------------------

    async def intake_once(self, timeout_ms: int = 500) -> int:
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=1000)
        envs = []
        flows = []
        upto: dict[TopicPartition, int] = {}
        for tp, msgs in batches.items():
            for m in msgs:
                upto[tp] = m.offset + 1
                # Checked as every consumer checks (envelope ids and time, payload against the
                # catalog): a poison message is never delivered to a customer. The projector
                # dead-letters it; here it is only skipped.
                item = self.source.item(m)
                if type(item) is Skipped:
                    continue
                if type(item) is Rejected:
                    log.warning("invalid event skipped", code=item.error.code, reason=item.error.reason,
                                partition=tp.partition, offset=m.offset)
                    continue
                env = item.env
                if env.type in WEBHOOK_TYPES:
                    envs.append(env)
                elif env.type == "flow.webhook.requested":
                    key = (tp.topic, tp.partition)
                    pending = self._unanswered.setdefault(key, [])
                    i = bisect.bisect_left(pending, m.offset)
                    if i == len(pending) or pending[i] != m.offset:  # (re-read after a rebalance: once)
                        pending.insert(i, m.offset)  # held before anything commits past it
                    flows.append((key, m.offset, env))
        if envs:
            async with self.pool.acquire() as conn:
                n = await store.enqueue(conn, self.topic, envs, max_attempts=self.s.max_attempts, cache=self.routes)
            self.stats["enqueued"] += n
            if n:
                self.wake.set()
        for tp, o in upto.items():  # the deliveries are in Postgres: up to here is done, but the flow steps
            self._read_upto[(tp.topic, tp.partition)] = o
        if upto:  # in the background: the next owner re-reads at most that much, enqueue is idempotent
            self.commits.note({key: self._committable(key) for key in ((tp.topic, tp.partition) for tp in upto)})
        for key, offset, env in flows:
            await self.flow_slots.acquire()  # bounded: the intake (so the reading) waits for a free slot
            self.flow_in_flight += 1
            self._spawn(self._flow_step(env, key, offset))
        return len(envs)

    def _committable(self, key: tuple[str, int]) -> int:
        """A partition's next offset to commit: up to the oldest unanswered flow-webhook request."""
        pending = self._unanswered.get(key)
        return pending[0] if pending else self._read_upto[key]

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _flow_step(self, env, key: tuple[str, int] | None = None, offset: int | None = None) -> None:
        """Ask the app for a flow's next steps; the answer goes back on the log for the orchestrator.
        Only once it is there may the committed offset pass the request."""
        from services.webhooks.flow_step import ask_app

        try:
            with tracing.handling(env, "webhook flow step", kind="client"):
                secret = await retry_transient(lambda: self._secret(env.account_id), what="webhooks: signing secret",
                                               log=log, stopping=self.stopping)
                out = await ask_app(self.client, secret, env)
            await retry_transient(lambda: publish(self.producer, self.topic, out), what="webhooks: flow answer",
                                  log=log, stopping=self.stopping)
        except Stopped:  # stopping before the answer is out: it stays unanswered, the next owner asks again
            self._flow_done(key, offset, answered=False)
            return
        except Exception as exc:  # not transient: held back, it would stop the partition's commits for good
            log.error("flow webhook not answered", call_id=env.call_id, request_id=env.id,
                      error=f"{type(exc).__name__}: {exc}"[:500])
        except BaseException:  # cancelled: unanswered
            self._flow_done(key, offset, answered=False)
            raise
        self._flow_done(key, offset, answered=True)

    def _flow_done(self, key: tuple[str, int] | None, offset: int | None, *, answered: bool) -> None:
        if key is None or offset is None:
            return
        self.flow_in_flight -= 1
        self.flow_slots.release()
        if not answered:
            return
        # Answered: the committed offset may pass the request now, never before.
        pending = self._unanswered.get(key, [])
        i = bisect.bisect_left(pending, offset)
        if i < len(pending) and pending[i] == offset:
            pending.pop(i)
        if key in self._read_upto:
            self.commits.note({key: self._committable(key)})

    async def intake(self) -> None:
        while not self.stopping.is_set():
            HEALTH.alive()
            try:
                await self.intake_once()
                HEALTH.worked("webhooks: intake")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                HEALTH.failed("webhooks: intake", f"{type(exc).__name__}: {exc}")
                log.error("intake failed; retrying", error=str(exc))
                await asyncio.sleep(1.0)

    # --- dispatch ----------------------------------------------------------------

    async def dispatch_once(self) -> int:
        free = self.lanes.free()
        if free <= 0:
            return 0
        async with self.pool.acquire() as conn:
            chosen = await store.claim(conn, self.topic, min(1000, free * 4), self.s.lease, self.lanes.choose)
        for d in chosen:
            self.lanes.acquire(d)
            t = asyncio.create_task(self._deliver(d))
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)
        return len(chosen)

    async def dispatch(self) -> None:
        while not self.stopping.is_set():
            try:
                n = await self.dispatch_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("dispatch failed; retrying", error=str(exc))
                n = 0
                await asyncio.sleep(1.0)
            if n and self.lanes.free() > 0:
                continue
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), self.s.poll_interval)
            except asyncio.TimeoutError:
                pass

    async def _secret(self, account_id: str) -> str | None:
        hit = self._secrets.get(account_id)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        async with self.pool.acquire() as conn:
            secret = await store.signing_secret(conn, account_id)
        self._secrets[account_id] = (time.monotonic() + 30.0, secret)
        return secret

    async def _deliver(self, d: store.Delivery) -> None:
        attempt = d.attempts + 1
        parent = trace.parse(d.traceparent)
        if parent is not None and d.tracestate is not None:
            parent = parent.with_state(d.tracestate)
        if parent is None:  # enqueued before deliveries kept their trace: logged and sent without one
            await self._attempt(d, attempt, None)
            return
        ctx = sender.attempt_trace(parent, d.event_id, attempt)
        with structlog.contextvars.bound_contextvars(trace_id=ctx.trace_id, call_id=d.call_id), \
                tracing.span("webhook delivery", ctx, parent, kind="client", **{
                    "canary.call_id": d.call_id, "canary.event_id": d.event_id, "canary.event_type": d.event_type,
                    "canary.delivery_attempt": attempt}) as span:
            status = await self._attempt(d, attempt, ctx)
            if span is not None and status is not None:
                span.set_attribute("http.response.status_code", status)

    async def _attempt(self, d: store.Delivery, attempt: int, ctx: trace.TraceContext | None) -> int | None:
        """One attempt, recorded; returns the receiver's status code (None: none came)."""
        started = store.utcnow()
        latency: int | None = None
        res = None
        try:
            secret = await self._secret(d.account_id)
            if not secret:
                res = sender.AttemptResult(None, 0, f"account {d.account_id} has no signing secret", permanent=True)
            else:
                headers = sender.headers_for(secret, d.body, d.event_id, d.event_type, attempt,
                                             traceparent=ctx.header if ctx is not None else None,
                                             tracestate=ctx.state if ctx is not None else None)
                res = await sender.post(self.client, d.url, d.body, headers, self.s.timeout)
                latency = res.latency_ms
            if res.ok:
                outcome, retry_in = "delivered", None
            elif res.permanent or attempt >= d.max_attempts:
                outcome, retry_in = "failed", None
                await self._dead_letter(d, attempt, res)
            else:
                outcome, retry_in = "retry", backoff(attempt, self.s.backoff_base, self.s.backoff_max)
            async with self.pool.acquire() as conn:
                await store.record_attempt(conn, d, started_at=started, status_code=res.status_code,
                                           latency_ms=res.latency_ms, error=res.error, outcome=outcome,
                                           retry_in=retry_in)
            self.stats[{"delivered": "delivered", "retry": "retried", "failed": "failed"}[outcome]] += 1
            metrics.WEBHOOK_SECONDS.labels(outcome).observe(res.latency_ms / 1000)
            log.info("webhook attempt", call_id=d.call_id, event_id=d.event_id, type=d.event_type, attempt=attempt,
                     status_code=res.status_code, latency_ms=res.latency_ms, outcome=outcome, error=res.error,
                     retry_in=None if retry_in is None else round(retry_in, 3))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the lease expires and the attempt is made again
            log.error("webhook attempt not recorded", event_id=d.event_id, error=str(exc))
        finally:
            self.lanes.release(d, latency)
            self.wake.set()
        return res.status_code if res is not None else None

    async def _dead_letter(self, d: store.Delivery, attempts: int, res: sender.AttemptResult) -> None:
        """voice.dlq first, then the table: a crash in between re-sends the DLQ record (keyed by event id)."""
        code = "webhook_refused" if res.permanent else "webhook_failed"
        reason = (f"webhook to {d.url} refused: {res.error}" if res.permanent
                  else f"webhook to {d.url} failed after {attempts} attempts: {res.error}")
        record = dlq_record(reason, code, source_topic=self.topic, raw=d.body, type=d.event_type,
                            errors=[{"event_id": d.event_id, "call_id": d.call_id, "url": d.url,
                                     "attempts": attempts, "last_status_code": res.status_code,
                                     "last_error": res.error}])
        await self.producer.send_and_wait(self.dlq_topic, record, key=d.event_id.encode())
        log.warning("webhook dead-lettered", call_id=d.call_id, event_id=d.event_id, reason=reason)

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.intake()), asyncio.create_task(self.dispatch())]
        await self.stopping.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def main() -> None:
    w = WebhookWorker()
    await serve(w, log, "webhooks", lambda: w.stats)


if __name__ == "__main__":
    asyncio.run(main())
