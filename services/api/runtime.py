"""Process-wide resources of the API: Postgres pool, Kafka producer, caches, rate limits.

Hot path budget for POST /v1/voice/calls: the key -> account lookup and the account's
verified numbers come from short-TTL in-memory caches, so a request costs one Postgres
round trip (the call_requests insert) and one Kafka ack.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from events import Envelope, encode
from services.common import accounts, db, tracing
from services.common.accounts import Account, VerifiedNumbers
from services.common.config import settings
from services.common.kafka import make_producer, type_headers
from services.common.logging import get_logger
from services.common.service import quiet_gc
from services.common.signing import InsecureSecretError, check_service_secrets, secret_list, secret_problem
from services.api import trace_middleware
from services.api.live_calls import LiveCallLimit
from services.api.live_events import EventHub
from services.api.errors import ApiError, unavailable

log = get_logger(service="api")


class TokenBucket:
    """Per-account call-creation limit: refills at `rate`/s, holds at most `burst` tokens."""

    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: float):
        self.rate = max(rate, 0.001)
        self.burst = max(burst, 1.0)
        self.tokens = self.burst
        self.at = time.monotonic()

    def take(self) -> float:
        """0 if a token was taken, else the seconds to wait for one."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def peek(self) -> float:
        """0 if a token is there (none is taken), else the seconds to wait for one."""
        tokens = min(self.burst, self.tokens + (time.monotonic() - self.at) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def full(self, now: float) -> bool:
        return self.tokens + (now - self.at) * self.rate >= self.burst


class Limiter:
    """One token bucket per key (an account id, a client address), the same rate for all.

    Bounded: past ``max_keys`` buckets, the full ones (as good as no bucket) are dropped,
    then the oldest, so a flood of new keys (addresses) costs bounded memory."""

    def __init__(self, rate: float, burst_seconds: float, max_keys: int = 100_000):
        self.rate = max(rate, 0.001)
        self.burst = max(20.0, self.rate * burst_seconds)
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def _bucket(self, key: str) -> TokenBucket:
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                self._prune()
            b = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return b

    def _prune(self) -> None:
        now = time.monotonic()
        for k in [k for k, b in self._buckets.items() if b.full(now)]:
            del self._buckets[k]
        while len(self._buckets) >= self.max_keys:
            del self._buckets[next(iter(self._buckets))]

    def take(self, key: str) -> float:
        return self._bucket(key).take()

    def peek(self, key: str) -> float:
        b = self._buckets.get(key)
        return 0.0 if b is None else b.peek()


def too_many(message: str, wait: float) -> ApiError:
    """The 429: code `rate_limited`, and Retry-After in whole seconds (at least 1)."""
    return ApiError(429, "rate_limited", message, headers={"Retry-After": str(max(1, math.ceil(wait)))})


# Request classes with their own per-account budget (POST /v1/voice/calls: the account's
# calls_per_second, see Runtime.rate_limit).
READ, WRITE, HANGUP = "read", "write", "hangup"


class Runtime:
    def __init__(self) -> None:
        s = settings()
        self.settings = s
        self.pool: asyncpg.Pool | None = None
        self.producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._next_kafka_try = 0.0
        self.send_timeout = s.api.send_timeout
        self.auth_ttl = s.api.auth_ttl
        self.max_body = s.api.max_body
        self.burst_factor = s.api.burst_seconds
        # Valid keys only: a flood of unknown keys never evicts them (those have their own,
        # smaller, shorter-lived cache), and concurrent lookups of one key share one query.
        self._keys: dict[bytes, tuple[float, Account]] = {}
        self._unknown: dict[bytes, float] = {}
        self._lookups: dict[bytes, asyncio.Future] = {}
        self.max_keys = 100_000
        self.max_unknown = 10_000
        self.negative_ttl = max(0.0, min(self.auth_ttl, s.api.auth_negative_ttl))
        self.numbers: VerifiedNumbers | None = None
        self._buckets: dict[str, TokenBucket] = {}
        burst = s.api.burst_seconds
        self.limits = {READ: Limiter(s.api.read_rate, burst), WRITE: Limiter(s.api.write_rate, burst),
                       HANGUP: Limiter(s.api.hangup_rate, burst)}
        self.auth_failures = Limiter(s.api.auth_fail_rate, burst)  # per client address
        self.media_downloads = Limiter(s.api.media_rate, burst)  # per client address
        self.requests = RequestWriter(self)
        self.live = EventHub()  # the SSE streams' reader of voice.call.events (started on demand)
        # Every command the API writes is signed with the service key (the orchestrator's
        # intake checks it when CANARY_KAFKA_INTAKE_AUTH=signed: docs/security.md).
        self.service_key = secret_list(s.kafka_service_key)[0]

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        # Whatever serves the app (`python -m services.api`, a uvicorn of its own) refuses
        # the development secrets outside development (services/common/signing.py).
        check_service_secrets(self.settings)
        tracing.setup("api", log)  # span export, when CANARY_OTEL_EXPORTER asks for it
        if self.settings.kafka_intake_auth == "signed" and self.settings.environment != "development":
            problem = secret_problem("CANARY_KAFKA_SERVICE_KEY", self.settings.kafka_service_key)
            if problem:
                raise InsecureSecretError(problem + ": set it (32+ random bytes) on the API and the orchestrator")
        # The projection tables are the projector's (created by it, and by `canary-voice stack up`).
        try:
            await db.migrate()
            self.pool = await self._create_pool(min_size=2)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            # Serve anyway: requests needing the database answer 503 until it is back.
            log.warning("database_unreachable_at_start", error=repr(exc))
            self.pool = None
        self.numbers = VerifiedNumbers(self, ttl=self.settings.api.numbers_ttl)
        self.live_calls = LiveCallLimit(self.db, self.settings.api.max_live_calls)
        await self.kafka(raise_on_error=False)
        await self._warm_up()
        await self._serve_metrics()
        quiet_gc()

    async def _warm_up(self) -> None:
        """Validate one example call before serving: the first validation imports the voice
        catalog, SSML parser and phone-number metadata (~0.3 s) the first callers would pay."""
        from events.catalog import EXAMPLE_REQUEST
        from services.lib.intake import check_place_call

        await check_place_call(dict(EXAMPLE_REQUEST), "acct_warmup", lambda account_id, number: True)

    async def _serve_metrics(self) -> None:
        """``/healthz`` and ``/metrics`` on CANARY_HEALTH_PORT, as every other service has them.
        With several uvicorn workers they would all want the port: one worker per process
        (as deploy/kubernetes runs it) is what gets metrics."""
        s = settings()
        self.health_server = None
        if not s.health_port:
            return
        if s.api.workers > 1:
            log.warning("metrics not served: CANARY_API_WORKERS > 1 (run one worker per process)")
            return
        from services.common.health import serve_health

        self.health_server = await serve_health(s.health_port, "api", s.health_host)

    async def stop(self) -> None:
        tracing.shutdown()
        if getattr(self, "health_server", None) is not None:
            self.health_server.close()
        await self.live.stop()
        if self.producer is not None:
            try:
                await self.producer.stop()
            except Exception:
                pass
        if self.pool is not None:
            await self.pool.close()

    # --- Postgres ----------------------------------------------------------------------
    async def db(self) -> asyncpg.Pool:
        if self.pool is None:
            try:
                self.pool = await self._create_pool(min_size=1, timeout=3)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                raise unavailable("database") from None
        return self.pool

    async def _create_pool(self, **kw: Any) -> asyncpg.Pool:
        # Kafka is where an accepted call is durable; the call_requests row is a
        # read-your-writes aid (GET right after POST), so its commit need not wait for
        # the WAL flush. Writes that must survive a Postgres crash (idempotency keys)
        # turn synchronous_commit back on for their transaction.
        api = self.settings.api
        return await db.create_pool(max_size=api.db_pool, init=db.init_connection,
                                    server_settings={"synchronous_commit": api.sync_commit}, **kw)

    # asyncpg-like facade so VerifiedNumbers can use the runtime as its `db`
    async def fetch(self, *args: Any) -> list:
        return await (await self.db()).fetch(*args)

    # --- Kafka -------------------------------------------------------------------------
    async def kafka(self, raise_on_error: bool = True) -> AIOKafkaProducer | None:
        """The started producer; (re)connects lazily, at most once a second."""
        if self.producer is not None:
            return self.producer
        if time.monotonic() < self._next_kafka_try or self._producer_lock.locked():
            if raise_on_error:
                raise unavailable("kafka")
            return None
        async with self._producer_lock:
            if self.producer is not None:
                return self.producer
            p = make_producer(request_timeout_ms=int(self.send_timeout * 1000), client_id="canary-api",
                              linger_ms=self.settings.api.linger_ms)
            try:
                await asyncio.wait_for(p.start(), self.send_timeout)
            except Exception as exc:
                self._next_kafka_try = time.monotonic() + 1.0
                log.warning("kafka_unreachable", error=repr(exc))
                try:
                    await p.stop()
                except Exception:
                    pass
                if raise_on_error:
                    raise unavailable("kafka") from None
                return None
            self.producer = p
            return p

    async def publish(self, topic: str, env: Envelope, *, command: bool = True) -> None:
        """Send and wait for the acks=all acknowledgement; ApiError 503 if it does not come.

        A command is signed for the orchestrator's intake; an event (``command=False``: a
        sandbox caller's call.received) carries its type header as every event does."""
        producer = await self.kafka()
        ctx = trace_middleware.current()
        if env.traceparent is None and ctx is not None:  # the request's trace goes with what it produces
            env = dataclasses.replace(env, traceparent=ctx.header, tracestate=ctx.state)
        try:
            async def _send() -> None:
                value = encode(env)
                headers = accounts.sign_command(self.service_key, value) if command else type_headers(env)
                fut = await producer.send(topic, value, key=env.call_id.encode(), headers=headers)
                await asyncio.shield(fut)

            await asyncio.wait_for(_send(), self.send_timeout + 1.0)
        except Exception as exc:
            log.warning("kafka_produce_failed", call_id=env.call_id, error=repr(exc))
            raise unavailable("kafka") from None

    # --- auth / limits -----------------------------------------------------------------
    def cached_account(self, key: str) -> Account | None:
        """The account of a valid key looked up less than auth_ttl ago (no query)."""
        hit = self._keys.get(accounts.hash_key(key))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def forget_key(self, key_id: str) -> None:
        """Drop a revoked key from this process's cache at once (other API processes
        still accept it for up to auth_ttl)."""
        self._keys = {h: v for h, v in self._keys.items() if v[1].key_id != key_id}

    async def authenticate(self, key: str) -> Account | None:
        h = accounts.hash_key(key)
        now = time.monotonic()
        hit = self._keys.get(h)
        if hit is not None and hit[0] > now:
            return hit[1]
        if self._unknown.get(h, 0.0) > now:
            return None  # unknown a moment ago: no query
        pending = self._lookups.get(h)
        if pending is not None:
            return await asyncio.shield(pending)
        fut = asyncio.get_running_loop().create_future()
        self._lookups[h] = fut
        try:
            acct = await accounts.authenticate(await self.db(), key)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._lookups[h]
        fut.set_result(acct)
        now = time.monotonic()
        if acct is not None:
            self._unknown.pop(h, None)
            if len(self._keys) >= self.max_keys:
                self._keys = {k: v for k, v in self._keys.items() if v[0] > now}
                while len(self._keys) >= self.max_keys:
                    del self._keys[next(iter(self._keys))]
            self._keys[h] = (now + self.auth_ttl, acct)
        elif self.negative_ttl > 0:
            # Unknown keys are remembered briefly (so guessing does not hammer Postgres),
            # in a bounded map of their own: the oldest go first.
            self._keys.pop(h, None)
            while len(self._unknown) >= self.max_unknown:
                del self._unknown[next(iter(self._unknown))]
            self._unknown[h] = now + self.negative_ttl
        return acct

    def limit(self, kind: str, account: Account) -> None:
        """429 unless the account has budget left for one more request of ``kind``."""
        lim = self.limits[kind]
        wait = lim.take(account.id)
        if wait > 0:
            raise too_many(f"{kind} requests are limited to {lim.rate:g}/s for this account", wait)

    def rate_limit(self, account: Account) -> None:
        b = self._buckets.get(account.id)
        if b is None or b.rate != max(account.calls_per_second, 0.001):
            rate = account.calls_per_second
            b = self._buckets[account.id] = TokenBucket(rate, max(20.0, rate * self.burst_factor))
        wait = b.take()
        if wait > 0:
            raise too_many(f"call creation is limited to {account.calls_per_second:g}/s for this account", wait)


class RequestWriter:
    """Group-commits call_requests rows: concurrent POSTs share one multi-row INSERT.

    Each request still waits for its own row to be committed (one round trip, shared),
    but Postgres and asyncpg pay their per-statement cost once per batch instead of
    once per call: under load that is most of the database CPU of a POST.
    """

    SQL = ("INSERT INTO call_requests (id, account_id, to_number, from_number, request, created_at)"
           " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::timestamptz[])")

    def __init__(self, runtime: "Runtime", max_batch: int = 500, flushers: int = 2):
        self.rt = runtime
        self.max_batch = max_batch
        self.flushers = flushers
        self._queue: list[tuple[tuple, asyncio.Future]] = []
        self._running = 0

    async def insert(self, call_id: str, account_id: str, to: str, from_: str, request: dict,
                     created_at: Any) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._queue.append(((call_id, account_id, to, from_, request, created_at), fut))
        if self._running < self.flushers:
            self._running += 1
            asyncio.create_task(self._flush())
        await fut

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
                cols = list(zip(*(row for row, _ in batch)))
                try:
                    pool = await self.rt.db()
                    await pool.execute(self.SQL, *[list(c) for c in cols])
                except BaseException as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc if isinstance(exc, Exception) else unavailable("database"))
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_result(None)
        finally:
            self._running -= 1
