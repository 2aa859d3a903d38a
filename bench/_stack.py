"""The whole-call benches' harness: the services as processes on their own topics, an
account to call with, a follower of the event log, and a poster that keeps a rate.

Used by bench/calls_e2e.py (one steady rate) and bench/capacity.py (a ramp of rates).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from events import decode
from events.catalog import TERMINAL_EVENTS
from services.common import accounts, db
from services.common.kafka import ensure_topics, make_consumer, make_producer
from tests.conftest import service_env, spawn

MODULES = ["services.api", "services.orchestrator.service", "services.telephony.gateway", "services.tts.worker",
           "services.projector.service"]
STAGE_TYPES = ("call.queued", "dial.requested", "call.ringing")


def pct(xs, p):
    """The p-quantile in ms (nan for nothing: a run where nothing got that far still reports)."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000 if xs else float("nan")


async def kafka_hop(prefix: str, n: int = 300) -> list[float]:
    """Seconds of one Kafka hop (produce -> consume on the same topic), `n` times: the baseline
    of every whole-call figure, since a call needs several hops in a row."""
    topic = prefix + "voice.media.audio"
    c = make_consumer(topic, group_id=None, auto_offset_reset="latest")
    await c.start()
    await c.seek_to_end()
    p = make_producer()
    await p.start()
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await p.send_and_wait(topic, b"x", key=str(i).encode())
        while True:
            got = await c.getmany(timeout_ms=1000)
            if got:
                break
        out.append(time.perf_counter() - t0)
    await p.stop()
    await c.stop()
    return out


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process and its waited-for children used so far."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def broker_pid() -> int | None:
    try:
        return int((Path(".local/kafka/kafka.pid")).read_text().strip())
    except (OSError, ValueError):
        return None


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@dataclass
class Posted:
    """What a run of POSTs got: accepted call ids with their send time, refusals by reason."""

    sent: dict[str, float] = field(default_factory=dict)
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    answered: list[float] = field(default_factory=list)
    t_start: float = 0.0
    posted_s: float = 0.0

    @property
    def achieved(self) -> float:
        return len(self.sent) / self.posted_s if self.posted_s > 0 else 0.0

    def error_text(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"


class CallStack:
    """`async with CallStack(...) as s`: the services up, an account with a key, the event log
    followed from the start (`s.ringing`, `s.ended`, `s.stages` by call id, service times)."""

    def __init__(self, *, rate: float, port: int, key_mode: str = "test", env: dict[str, str] | None = None,
                 modules: list[str] | None = None) -> None:
        self.prefix = f"bench{uuid.uuid4().hex[:6]}."
        self.rate, self.port, self.key_mode = rate, port, key_mode
        self.extra_env = env or {}
        self.modules = modules or MODULES
        self.procs: list[Any] = []
        self.ringing: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.ended_at: dict[str, float] = {}
        self.ended_type: dict[str, str] = {}
        self.stages: dict[str, dict[str, tuple[float, float]]] = {}
        self.base: list[float] = []

    async def __aenter__(self) -> "CallStack":
        await ensure_topics(prefix=self.prefix)
        self.conn = await db.connect()
        self.account = await accounts.create_account(self.conn, "bench-" + self.prefix.rstrip("."),
                                                     calls_per_second=self.rate * 2)
        await accounts.ensure_number(self.conn, self.account["id"], "+15559876543")
        _, self.key = await accounts.create_key(self.conn, self.account["id"], self.key_mode)
        logdir = Path(".local/bench")
        logdir.mkdir(parents=True, exist_ok=True)
        env = service_env(self.prefix, CANARY_API_PORT=str(self.port),
                          CANARY_PROJECTION_SCHEMA="bench_" + self.prefix.rstrip("."),
                          # a bench measures the system, not the per-account cap on live calls
                          **{"CANARY_MAX_LIVE_CALLS": "100000", **self.extra_env})
        try:
            self.procs = [spawn(m, env, logdir / f"{m}.log") for m in self.modules]
            self.base = await kafka_hop(self.prefix)
            ready = asyncio.Event()
            self._follower = asyncio.create_task(self._follow(ready))
            await ready.wait()
            limits = httpx.Limits(max_connections=max(100, int(self.rate * 4)), max_keepalive_connections=100)
            # Enough connections for the rate: at 100 calls/s and a slow API, httpx's default pool
            # of 100 ran dry and the bench died of PoolTimeout instead of reporting.
            self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10, limits=limits,
                                          headers={"Authorization": f"Bearer {self.key}"})
            for _ in range(100):
                try:
                    await self.http.get("/v1/voice/calls")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # consumers join their groups
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if getattr(self, "_follower", None):
            self._follower.cancel()
        if getattr(self, "http", None):
            await self.http.aclose()
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            p.wait(timeout=30)
        await self.conn.execute("DELETE FROM accounts WHERE id = $1", self.account["id"])
        await self.conn.close()

    async def _follow(self, ready: asyncio.Event) -> None:
        c = make_consumer(self.prefix + "voice.call.events", group_id=None)
        await c.start()
        ready.set()
        try:
            while True:
                for msgs in (await c.getmany(timeout_ms=100)).values():
                    now = time.perf_counter()
                    for m in msgs:
                        e = decode(m.value)
                        t = getattr(e, "type", None)
                        if t in STAGE_TYPES:
                            self.stages.setdefault(e.call_id, {})[t] = (_ts(e.occurred_at), m.timestamp / 1000)
                        if t == "call.ringing":
                            # the gateway's own timestamp: the bench's lag is not the product's
                            self.ringing.setdefault(e.call_id, _ts(e.occurred_at))
                        elif t in TERMINAL_EVENTS and e.call_id not in self.ended:
                            self.ended[e.call_id] = now
                            self.ended_at[e.call_id] = _ts(e.occurred_at)
                            self.ended_type[e.call_id] = t
        finally:
            await c.stop()

    def watched(self) -> dict[str, int]:
        """Process name -> pid of every service (and the broker, when it runs here)."""
        out = {m.rsplit(".", 2)[1] if m.count(".") > 1 else m.split(".")[-1]: p.pid
               for m, p in zip(self.modules, self.procs)}
        if (bp := broker_pid()) is not None:
            out["kafka broker"] = bp
        return out

    async def warm_up(self, body: dict[str, Any], timeout: float = 60.0) -> None:
        """One call first: each run has a new account, whose first prompt is a real render (and
        loads the voice model); the measured calls find it in the cache."""
        warm = (await self.http.post("/v1/voice/calls", json=body)).json()["id"]
        await self.wait_ended([warm], timeout)

    async def post_at_rate(self, body: dict[str, Any], n: int, rate: float) -> Posted:
        """POST `n` calls at `rate` per second (by the clock, not one after the other); a POST the
        system could not answer is counted, never fatal."""
        out = Posted(t_start=time.perf_counter())

        async def post(i: int) -> None:
            await asyncio.sleep(max(0.0, out.t_start + i / rate - time.perf_counter()))
            t0 = time.time()
            try:
                r = await self.http.post("/v1/voice/calls", json=body)
            except httpx.HTTPError as exc:
                out.failures += 1
                out.errors[type(exc).__name__] = out.errors.get(type(exc).__name__, 0) + 1
                return
            out.answered.append(time.time() - t0)
            if r.status_code in (200, 201):
                out.sent[r.json()["id"]] = t0
            else:
                out.failures += 1
                out.errors[str(r.status_code)] = out.errors.get(str(r.status_code), 0) + 1

        await asyncio.gather(*(post(i) for i in range(n)))
        out.posted_s = time.perf_counter() - out.t_start
        return out

    async def wait_ended(self, ids, timeout: float) -> int:
        """Wait until every call in `ids` ended or `timeout` passed; how many did not end."""
        ids = list(ids)
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            left = sum(1 for c in ids if c not in self.ended)
            if not left:
                return 0
            await asyncio.sleep(0.2)
        return sum(1 for c in ids if c not in self.ended)
