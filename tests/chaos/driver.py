"""The chaos run: the whole stack as real processes, a steady load of sandbox calls through
the HTTP API, and every fault of the reliability issue injected while it runs.

The scale run is the same run on a 3-broker cluster with two instances of every service
(``Config(replicas=2, bootstrap=..., faults_kind="scale")``): its faults are one instance of
each service SIGKILLed (and restarted after 5 s, as an orchestrator would) and one broker
SIGKILLed for good, and the accounting is the same.

Shared by `tests/chaos/test_chaos.py` (short: about 100 calls, each fault once) and
`bench/chaos.py` (`--calls 1000`). `run(cfg)` never raises for a failed invariant: it returns
a `Report` whose `failures` say which ones did not hold, and `figures` what was measured.

Faults, each once, in a random order at random moments of the load: SIGKILL of every
service (the driver's supervisor restarts it), every Postgres process SIGSTOPped for 5 s,
the Kafka broker stopped and started again (`services.ops.stack`), the poison messages of
`tests/integration/test_poison.py` on voice.call.events and garbage bytes on the command,
event and audio topics. Whatever happens, `run` puts back what it touched: Postgres is
SIGCONTed, the broker is brought up, every process it started is stopped.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tests.conftest import free_port, postgres_pids

ROOT = Path(__file__).resolve().parents[2]
NUMBER = "+15559876543"
PRESSER = "+15557779001"  # a scripted sandbox callee that presses digits for the gather
PLAIN = "+15551234567"

SERVICES = {  # name -> module (python -m)
    "api": "services.api",
    "orchestrator": "services.orchestrator.service",
    "telephony": "services.telephony.gateway",
    "tts": "services.tts.worker",
    "recording": "services.recording.worker",
    "transcription": "services.transcription.worker",
    "speech-gather": "services.transcription.speech_gather",
    "webhooks": "services.webhooks",
    "projector": "services.projector.service",
}

# Consumers of voice.call.events that dead-letter a record they take and cannot read (the
# consume-with-tracking block or the media workers' loop), and the types they take
# (None: every type). The webhooks service skips what it cannot decode; nothing
# dead-letters voice.media.audio (the speech-gather worker skips what is not a chunk).
EVENT_CONSUMERS: dict[str, frozenset[str] | None] = {
    "projector": None,
    "orchestrator": frozenset({"call.ringing", "call.answered", "tts.rendered", "audio.fetched"}),
    "telephony": frozenset(),
    "tts": frozenset(),
    "recording": frozenset(),
    "transcription": frozenset({"recording.completed"}),
}
# The poison message whose fault is what Postgres refuses: only a consumer that writes it
# into Postgres sees it. The poison names a call that has ended: the projector stores every
# event, the orchestrator ignores every input of a finished call (stores nothing of it).
POSTGRES_ONLY = {"tts.rendered with \\u0000 (reaches jsonb)": {"projector"}}


def expected_dead_letters(name: str, raw: bytes) -> set[str]:
    """The consumers that must dead-letter this poison message on voice.call.events."""
    if name in POSTGRES_ONLY:
        return set(POSTGRES_ONLY[name])
    try:
        type_ = orjson.loads(raw).get("type")
    except orjson.JSONDecodeError:
        type_ = None  # not JSON: every consumer that checks its records rejects it
    return {c for c, types in EVENT_CONSUMERS.items() if types is None or type_ is None or type_ in types}


@dataclass
class Config:
    calls: int = 100
    rate: float = 1.5  # POSTs per second
    speed: float = 4.0  # sandbox speed
    seed: int | None = None
    settle_s: float = 180.0  # generous deadlines: the outcome is waited for, never timed
    logdir: Path | None = None
    faults: bool = True
    replicas: int = 1  # instances of every service
    bootstrap: str | None = None  # a Kafka cluster's bootstrap (default: the stack's broker)
    # chaos: every fault once; scale: one instance of each service and one broker, one after the
    # other (each its own recovery time); scale-at-once: all of those in the same instant
    faults_kind: str = "chaos"


@dataclass
class Report:
    figures: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    recovery: list[tuple[str, float | None]] = field(default_factory=list)
    logdir: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        if not ok:
            self.failures.append(f"{what}: {detail}" if detail else what)

    def text(self) -> str:
        lines = ["chaos run:"]
        lines += [f"  {k:44} {v}" for k, v in self.figures.items()]
        lines.append("  time to recover (fault over -> first call placed after it completed):")
        for name, s in self.recovery:
            lines.append(f"    {name:40} {'never' if s is None else f'{s:.1f} s'}")
        lines.append("invariants: " + ("all held" if self.ok else "FAILED"))
        lines += [f"  - {f}" for f in self.failures]
        if self.logdir:
            lines.append(f"service logs: {self.logdir}")
        return "\n".join(lines)


# --- the webhook receiver ------------------------------------------------------------------

class Receiver:
    """A real local HTTP endpoint recording every delivery with its event id."""

    def __init__(self) -> None:
        self.deliveries: list[dict] = []

    async def start(self) -> str:
        from aiohttp import web

        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = {}
            self.deliveries.append({"event_id": request.headers.get("Canary-Event-Id"),
                                    "type": request.headers.get("Canary-Event-Type"), "call_id": doc.get("call_id"),
                                    "status": doc.get("status"), "at": time.monotonic()})
            return web.Response(status=200)

        app = web.Application()
        app.router.add_post("/hook", hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        return f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        await self.runner.cleanup()


# --- the supervisor --------------------------------------------------------------------------

class Supervisor:
    """Starts the services as processes (own session each), kills and restarts them on
    request, and restarts (and counts) any exit the driver did not cause."""

    def __init__(self, env: dict[str, str], logdir: Path, replicas: int = 1,
                 api_ports: list[int] | None = None) -> None:
        from tests.conftest import spawn

        self.spawn, self.env, self.logdir = spawn, env, logdir
        # An instance is `name` alone, or `name#k` (k = 1..replicas) when a service runs several times.
        self.names = list(SERVICES) if replicas == 1 else [f"{n}#{k}" for n in SERVICES for k in range(1, replicas + 1)]
        self.api_ports = api_ports or []
        self.procs: dict[str, subprocess.Popen] = {}
        self.unexpected: list[tuple[str, int | None]] = []
        self.killing: set[str] = set()
        self.stopping = False

    def log(self, name: str) -> Path:
        return self.logdir / f"{name}.log"

    def start(self, name: str) -> None:
        service, _, k = name.partition("#")
        env = self.env
        if service == "api" and self.api_ports:
            env = {**env, "CANARY_API_PORT": str(self.api_ports[int(k or 1) - 1])}
        self.procs[name] = self.spawn(SERVICES[service], env, self.log(name))

    def start_all(self) -> None:
        for name in self.names:
            self.start(name)

    async def kill_and_restart(self, name: str, down_s: float = 1.0) -> None:
        self.killing.add(name)
        try:
            p = self.procs[name]
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await asyncio.to_thread(p.wait, 30)
            await asyncio.sleep(down_s)
            self.start(name)
        finally:
            self.killing.discard(name)

    async def watch(self) -> None:
        while not self.stopping:
            for name, p in list(self.procs.items()):
                if name not in self.killing and p.poll() is not None and not self.stopping:
                    self.unexpected.append((name, p.returncode))
                    self.start(name)
            await asyncio.sleep(0.5)

    def stop_all(self) -> None:
        self.stopping = True
        for p in self.procs.values():
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)


# --- following the log --------------------------------------------------------------------------

class Follower:
    """Every record of voice.call.events, from the start, with when the driver saw it."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.events: dict[str, list] = defaultdict(list)  # call_id -> [(type, id, seen_at)]
        self.first_seen: dict[str, float] = {}  # event id -> monotonic
        self.undecodable = 0

    async def run(self) -> None:
        from events import Envelope, decode
        from services.common.kafka import make_consumer

        c = make_consumer(self.topic, group_id=None, auto_offset_reset="earliest")
        await c.start()
        try:
            while True:
                for msgs in (await c.getmany(timeout_ms=200)).values():
                    now = time.monotonic()
                    for m in msgs:
                        e = decode(m.value)
                        if not isinstance(e, Envelope):
                            self.undecodable += 1
                            continue
                        self.events[e.call_id].append((e.type, e.id, now))
                        self.first_seen.setdefault(e.id, now)
        finally:
            await c.stop()

    def of(self, call_id: str, type_: str) -> list[str]:
        return [i for t, i, _ in self.events.get(call_id, ()) if t == type_]

    def terminal_ids(self, call_id: str) -> set[str]:
        from events.catalog import TERMINAL_EVENTS

        return {i for t, i, _ in self.events.get(call_id, ()) if t in TERMINAL_EVENTS}

    def completed_at(self, call_id: str) -> float | None:
        return next((s for t, _, s in self.events.get(call_id, ()) if t == "call.completed"), None)


async def read_topic(topic: str, idle_ms: int = 1500) -> list:
    """Every record of `topic` from the start (until a read comes back empty)."""
    from services.common.kafka import make_consumer

    c = make_consumer(topic, group_id=None, auto_offset_reset="earliest")
    await c.start()
    out: list = []
    try:
        while True:
            got = await c.getmany(timeout_ms=idle_ms)
            if not got:
                return out
            for ms in got.values():
                out.extend(ms)
    finally:
        await c.stop()


# --- the load --------------------------------------------------------------------------------------

@dataclass
class Post:
    i: int
    key: str
    sent_at: float
    status: int | None = None  # the final answer's status code (None: no answer)
    code: str | None = None
    call_id: str | None = None
    attempts: int = 0


def body_for(i: int, hook: str) -> dict:
    """Four kinds of calls, in turn: a prompt; a gather the callee answers; recorded; both."""
    kind = i % 4
    body = {"to": PLAIN, "from": NUMBER, "tts": {"text": f"Hello, this is call number {i}."}, "webhook_url": hook}
    if kind in (1, 3):
        body.update(to=PRESSER, gather={"type": "dtmf", "num_digits": 2, "timeout": 10})
        body["tts"] = {"text": "Please enter the two digit code."}
    if kind in (2, 3):
        body["record"] = True
    return body


async def post_call(http, post: Post, body: dict, deadline_s: float) -> None:
    """POST with an Idempotency-Key; a lost answer (the API killed mid-request, a 409 while the
    first attempt settles) is retried with the same key until an answer is final. With several
    API instances (``http`` a list), each attempt goes to the next one, as a load balancer's
    retry would."""
    import httpx

    clients = http if isinstance(http, list) else [http]
    end = time.monotonic() + deadline_s
    while True:
        post.attempts += 1
        try:
            r = await clients[(post.i + post.attempts) % len(clients)].post("/v1/voice/calls", json=body, headers={"Idempotency-Key": post.key})
        except httpx.HTTPError:
            r = None
        if r is not None:
            code = (r.json().get("error") or {}).get("code") if r.status_code >= 400 else None
            if not (r.status_code == 409 and code in ("idempotency_in_progress", "idempotency_conflict")):
                post.status, post.code = r.status_code, code
                if r.status_code in (200, 201):
                    post.call_id = r.json()["id"]
                elif code == "outcome_unknown":
                    post.call_id = r.json()["error"]["message"].split("call ")[1].split()[0]
                return
        if time.monotonic() > end:
            return
        await asyncio.sleep(1.0)


# --- faults ----------------------------------------------------------------------------------------

class Faults:
    def __init__(self, sup: Supervisor, prefix: str, account: str) -> None:
        self.sup, self.prefix, self.account = sup, prefix, account
        self.frozen: list[int] = []
        self.kafka_stopped = False
        self.injected: dict[tuple[str, int, int], tuple[str, set[str]]] = {}  # (topic, p, o) -> (name, consumers)
        self.poison_call = "call_poison" + uuid.uuid4().hex[:12]  # replaced by a real call's id
        self.poison_ids: set[str] = set()

    def all(self) -> list[tuple[str, object]]:
        out: list[tuple[str, object]] = [(f"SIGKILL {n}", (lambda n=n: self.sup.kill_and_restart(n))) for n in SERVICES]
        out += [("Postgres SIGSTOP 5 s", self.freeze_postgres), ("Kafka broker restart", self.restart_kafka),
                ("poison + garbage bytes", self.poison)]
        return out

    def scale(self, at_once: bool = False) -> list[tuple[str, object]]:
        """One instance of each service SIGKILLed, back 5 s later (its partitions move to the other
        instance meanwhile, and back), and one broker of the cluster SIGKILLed for good; with
        ``at_once``, all of them in the same instant (one fault)."""
        out: list[tuple[str, object]] = [
            (f"SIGKILL {n}#1", (lambda n=n: self.sup.kill_and_restart(f"{n}#1", down_s=5.0))) for n in SERVICES]
        out.append(("SIGKILL Kafka broker 3 (stays down)", self.kill_broker))
        if at_once:
            async def everything() -> None:
                await asyncio.gather(*(f() for _, f in out))
            return [(f"SIGKILL {' + '.join(n.split()[1] for n, _ in out[:-1])} + Kafka broker 3", everything)]
        return out

    async def kill_broker(self) -> None:
        from services.ops import stack

        await asyncio.to_thread(stack.cluster_node_down, 3, True)

    async def freeze_postgres(self) -> None:
        self.frozen = postgres_pids()
        for p in self.frozen:
            os.kill(p, signal.SIGSTOP)
        try:
            await asyncio.sleep(5.0)
        finally:
            self.thaw()

    def thaw(self) -> None:
        for p in self.frozen:
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.frozen = []

    async def restart_kafka(self) -> None:
        from services.ops import stack

        self.kafka_stopped = True
        await asyncio.to_thread(stack.kafka_down)
        await asyncio.to_thread(stack.kafka_up)
        self.kafka_stopped = False

    async def poison(self) -> None:
        from services.common.kafka import make_producer
        from tests.integration.test_poison import poison

        p = make_producer()
        await p.start()
        try:
            events = self.prefix + "voice.call.events"
            for name, raw, _code, _word in poison(self.poison_call, self.account):
                md = await p.send_and_wait(events, raw, key=self.poison_call.encode())
                if raw[:1] == b"{":
                    self.poison_ids.add(orjson.loads(raw)["id"])
                self.injected[(events, md.partition, md.offset)] = (name, expected_dead_letters(name, raw))
            garbage = b"\x00\xff{garbage"
            for topic, consumers in (("voice.call.commands", {"orchestrator"}), ("voice.media.audio", set())):
                md = await p.send_and_wait(self.prefix + topic, garbage, key=self.poison_call.encode())
                self.injected[(self.prefix + topic, md.partition, md.offset)] = (f"garbage bytes on {topic}",
                                                                                 consumers)
        finally:
            await p.stop()


# --- the run ----------------------------------------------------------------------------------------

async def _until(pred, timeout: float, every: float = 0.5) -> bool:
    end = time.monotonic() + timeout
    while True:
        if await pred():
            return True
        if time.monotonic() > end:
            return False
        await asyncio.sleep(every)


async def stable_members(group: str) -> int:
    """How many members `group` has once it is stable with every member assigned (0 before)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from services.common.config import settings

    admin = AIOKafkaAdminClient(bootstrap_servers=settings().kafka_bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        groups = [g for r in await admin.describe_consumer_groups([group]) for g in r.to_object()["groups"]]
    finally:
        await admin.close()
    g = groups[0] if groups else {"state": "", "members": []}
    ok = g["state"] == "Stable" and all(m["member_assignment"] for m in g["members"])
    return len(g["members"]) if ok else 0


async def _delete_topics(prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from services.common.config import settings

    admin = AIOKafkaAdminClient(bootstrap_servers=settings().kafka_bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    except Exception:  # noqa: BLE001 - housekeeping only
        pass
    finally:
        await admin.close()


async def run(cfg: Config) -> Report:
    import httpx

    from services.common import accounts, db
    from services.common.kafka import ensure_topics
    from services.ops import stack
    from services.webhooks.payloads import STATUS_EVENTS
    from tests.conftest import service_env

    rnd = random.Random(cfg.seed)
    report = Report()
    saved_env = {k: os.environ.get(k) for k in ("CANARY_KAFKA_BOOTSTRAP", "CANARY_KAFKA_REPLICATION")}
    if cfg.bootstrap:  # this process's clients and every service's: the cluster, topics 3 times
        os.environ["CANARY_KAFKA_BOOTSTRAP"] = cfg.bootstrap
        os.environ["CANARY_KAFKA_REPLICATION"] = "3"
    try:
        return await _run(cfg, rnd, report)
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


async def _run(cfg: Config, rnd: random.Random, report: Report) -> Report:
    import httpx

    from services.common import accounts, db
    from services.common.kafka import ensure_topics
    from services.ops import stack
    from services.webhooks.payloads import STATUS_EVENTS
    from tests.conftest import service_env

    prefix = f"chaos{uuid.uuid4().hex[:8]}."
    schema = "chaos_" + uuid.uuid4().hex[:10]
    logdir = cfg.logdir or Path(tempfile.gettempdir()) / ("chaos-" + prefix.rstrip("."))
    logdir.mkdir(parents=True, exist_ok=True)
    report.logdir = logdir
    await ensure_topics(partitions=2, prefix=prefix)
    conn = await db.connect()
    acct = await accounts.create_account(conn, "chaos-" + prefix.rstrip("."), calls_per_second=100)
    await accounts.ensure_number(conn, acct["id"], NUMBER)
    _, key = await accounts.create_key(conn, acct["id"], "test")
    await conn.execute("INSERT INTO sandbox_callees (number, account_id, script) VALUES ($1, $2, $3::jsonb)",
                       PRESSER, acct["id"], orjson.dumps({"ring": 0.5, "after": 0.5, "press": "42"}).decode())
    api_ports = [free_port() for _ in range(cfg.replicas)]
    port = api_ports[0]
    env = service_env(prefix, CANARY_PROJECTION_SCHEMA=schema, CANARY_SANDBOX_SPEED=str(cfg.speed),
                      CANARY_ALLOW_PRIVATE_URLS="1", CANARY_API_PORT=str(port), CANARY_API_HOST="127.0.0.1",
                      CANARY_API_WRITE_RATE="1000", CANARY_MAX_LIVE_CALLS="10000", CANARY_GATEWAY_LEASE_S="5",
                      CANARY_WEBHOOK_BACKOFF_BASE="0.5", CANARY_WEBHOOK_BACKOFF_MAX="5", CANARY_ENV="development")
    receiver, sup = Receiver(), Supervisor(env, logdir, cfg.replicas, api_ports)
    follower = Follower(prefix + "voice.call.events")
    faults = Faults(sup, prefix, acct["id"])
    tasks: list[asyncio.Task] = []
    posts: list[Post] = []
    fault_log: list[tuple[str, float, float]] = []
    try:
        hook = await receiver.start()
        tasks.append(asyncio.create_task(follower.run()))
        sup.start_all()
        tasks.append(asyncio.create_task(sup.watch()))
        clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{p}", timeout=60,
                                     headers={"Authorization": f"Bearer {key}"}) for p in api_ports]
        http = clients if len(clients) > 1 else clients[0]
        try:
            async def ready():
                try:
                    return all([(await c.get("/readyz")).status_code == 200 for c in clients])
                except httpx.HTTPError:
                    return False
            if not await _until(ready, 180):
                report.check("the API answered /readyz within 180 s", False)
                return report
            if cfg.replicas > 1:
                # Every instance in its group before the first call: a gateway joining later would
                # take the partition of calls another one carries (their instructions then go to it).
                async def joined():
                    return all([await stable_members(prefix + g) == cfg.replicas
                                for g in ("orchestrator", "telephony", "webhooks", "projector")])
                if not await _until(joined, 180, every=1.0):
                    report.check(f"every group has its {cfg.replicas} instances within 180 s", False)
                    return report
            # Warm-up: one call of each kind through every service before the clock starts.
            warm = [Post(-1 - k, "warm-" + uuid.uuid4().hex, time.monotonic()) for k in range(4)]
            await asyncio.gather(*(post_call(http, w, body_for(k, hook), 60) for k, w in enumerate(warm)))

            async def warmed():
                return all(w.call_id and follower.completed_at(w.call_id) for w in warm) and all(
                    follower.of(w.call_id, "recording.completed") for w in warm if w.i in (-3, -4))
            if not await _until(warmed, 180):
                report.check("warm-up calls completed within 180 s", False,
                             str([(w.status, w.code, w.call_id) for w in warm]))
                return report

            # The poison goes between the events of a real call, one that has ended (a
            # finished call ignores every input, so what each consumer does is known).
            faults.poison_call = warm[0].call_id
            t0 = time.monotonic()
            span = cfg.calls / cfg.rate
            kinds = {"chaos": faults.all, "scale": faults.scale, "scale-at-once": lambda: faults.scale(at_once=True)}
            schedule = kinds[cfg.faults_kind]() if cfg.faults else []
            rnd.shuffle(schedule)

            faults_done = asyncio.Event()
            tail = 10  # calls placed after the last fault, so that each fault has a "next call"

            async def load():
                async def one(i):
                    p = Post(i, uuid.uuid4().hex, time.monotonic())
                    posts.append(p)
                    await post_call(http, p, body_for(i, hook), deadline_s=120)
                # At `rate`, `calls` of them, and on while the faults last (they may overrun
                # their slots on a slow machine), then `tail` more.
                running, i, after = [], 0, 0
                while i < cfg.calls or not faults_done.is_set() or after < tail:
                    await asyncio.sleep(max(0.0, t0 + i / cfg.rate - time.monotonic()))
                    running.append(asyncio.create_task(one(i)))
                    after += faults_done.is_set()
                    i += 1
                await asyncio.gather(*running)

            async def recovered(end: float) -> float | None:
                """Seconds from a fault's end until the first call POSTed after it completes."""
                async def done():
                    return any(follower.completed_at(p.call_id) for p in posts if p.sent_at >= end and p.call_id)
                if not await _until(done, 120, every=0.1):
                    return None
                return min(c for p in posts if p.sent_at >= end and p.call_id
                           and (c := follower.completed_at(p.call_id))) - end

            async def inject():
                # Each fault at a random moment of its slot, and never before the system has
                # recovered from the previous one (so each recovery time is that fault's).
                slot = span * 0.8 / max(1, len(schedule))
                try:
                    for k, (name, fault) in enumerate(schedule):
                        at = t0 + span * 0.1 + slot * k + rnd.uniform(0, slot * 0.5)
                        await asyncio.sleep(max(0.0, at - time.monotonic()))
                        start = time.monotonic()
                        await fault()
                        end = time.monotonic()
                        fault_log.append((name, start, end))
                        report.recovery.append((name, await recovered(end)))
                finally:
                    faults_done.set()

            await asyncio.gather(load(), inject())
            load_s = time.monotonic() - t0

            accepted = {p.call_id: p for p in posts if p.status in (200, 201)}
            unknown = {p.call_id for p in posts if p.code == "outcome_unknown"}

            async def all_ended():
                return all(follower.terminal_ids(c) for c in accepted)
            await _until(all_ended, cfg.settle_s)
            settle_t0 = time.monotonic()
        finally:
            for c in clients:
                await c.aclose()

        # --- settle: webhooks delivered, projector caught up ---------------------------------
        def status_events() -> dict[str, tuple[str, str]]:
            return {i: (c, t) for c in accepted for t, i, _ in follower.events.get(c, ()) if t in STATUS_EVENTS}

        def missing_hooks() -> set[str]:
            got = {d["event_id"] for d in receiver.deliveries}
            return set(status_events()) - got

        async def delivered():
            return not missing_hooks()
        await _until(delivered, cfg.settle_s)

        from events import topics as _topics  # noqa: F401 - names below are the prefixed ones

        async def projected():
            from aiokafka import TopicPartition

            from services.common.kafka import make_consumer

            c = make_consumer(group_id=None)
            await c.start()
            try:
                tps = [TopicPartition(prefix + "voice.call.events", p) for p in range(2)]
                ends = sum((await c.end_offsets(tps)).values())
            finally:
                await c.stop()
            try:
                done = await conn.fetchval(f"SELECT coalesce(sum(next_offset), 0) FROM {schema}.offsets")
            except Exception:  # noqa: BLE001 - the projector creates its schema when it starts
                return False
            return done == ends
        await _until(projected, cfg.settle_s)
        settle_s = time.monotonic() - settle_t0
        await asyncio.sleep(3)  # late duplicates would show up now

        # --- the invariants ----------------------------------------------------------------
        f = report.figures
        f["calls POSTed"] = len(posts)
        f["answered 2xx"] = len(accepted)
        answers = Counter(p.status if p.code is None else f"{p.status} {p.code}" for p in posts)
        f["answers"] = dict(sorted(answers.items(), key=str))
        f["POSTs retried (lost answer, same key)"] = sum(p.attempts > 1 for p in posts)
        once = [c for c in accepted if len(follower.terminal_ids(c)) == 1]
        lost = [c for c in accepted if not follower.terminal_ids(c)]
        twice = [c for c in accepted if len(follower.terminal_ids(c)) > 1]
        f["exactly one final status"] = len(once)
        f["lost (2xx, no final status)"] = len(lost)
        f["more than one final status"] = len(twice)
        report.check("every 2xx call has exactly one final status", len(once) == len(accepted),
                     f"lost {lost[:5]}, twice {twice[:5]}")
        finals = Counter(next(t for t, i, _ in follower.events[c] if i in follower.terminal_ids(c)) for c in once)
        f["final statuses"] = dict(finals)

        dialed = {c for c, evs in follower.events.items() if any(t in ("call.queued", "dial.requested")
                                                                  for t, _, _ in evs)}
        warm_ids = {w.call_id for w in warm}
        refused_dialed = dialed - set(accepted) - unknown - warm_ids - {faults.poison_call}
        abandoned = {r["id"] for r in await conn.fetch(
            "SELECT id FROM call_requests WHERE account_id = $1 AND state = 'abandoned'", acct["id"])}
        f["answered non-2xx"] = len(posts) - len(accepted)
        f["abandoned requests (API answered 503)"] = len(abandoned)
        f["non-2xx calls dialed"] = len(refused_dialed | (abandoned & dialed))
        report.check("a call answered non-2xx is never dialed", not (refused_dialed | (abandoned & dialed)),
                     str(sorted(refused_dialed | (abandoned & dialed))[:5]))
        no_answer = [p.i for p in posts if p.status is None]
        f["POSTs without a final answer"] = len(no_answer)
        report.check("every POST got a final answer (retried with its key)", not no_answer, str(no_answer[:10]))

        ringing = {c: len(follower.of(c, "call.ringing")) for c in accepted}
        twice_rung = sorted(c for c, n in ringing.items() if n > 1)
        claims = {r["call_id"]: r for r in await conn.fetch(
            "SELECT call_id, dial_event FROM telephony_calls WHERE account_id = $1", acct["id"])}
        dial_ids = {c: set(follower.of(c, "dial.requested")) for c in accepted}
        bad_claims = sorted(c for c in accepted if follower.of(c, "call.ringing") and (
            c not in claims or {str(claims[c]["dial_event"])} != dial_ids[c]))
        f["calls dialed twice (>1 call.ringing)"] = len(twice_rung)
        f["dial claims not one per dialed call"] = len(bad_claims)
        report.check("no call dialed twice (at most one call.ringing)", not twice_rung, str(twice_rung[:5]))
        report.check("one dial claim per dialed call, for its one dial.requested", not bad_claims,
                     str([(c, dial_ids[c], claims.get(c)) for c in bad_claims[:3]]))

        miss = missing_hooks()
        delivered_ids = Counter(d["event_id"] for d in receiver.deliveries)
        wanted = status_events()
        f["status events (2xx calls)"] = len(wanted)
        f["status webhooks missing at the receiver"] = len(miss)
        f["webhook deliveries (all kinds)"] = len(receiver.deliveries)
        f["duplicate deliveries"] = sum(n - 1 for n in delivered_ids.values() if n > 1)
        report.check("no status webhook missing", not miss, str([wanted[i] for i in list(miss)[:5]]))
        no_id = [d for d in receiver.deliveries if not d["event_id"]]
        report.check("every delivery carries its event id", not no_id, str(no_id[:3]))
        known = set(follower.first_seen)
        foreign = [d for d in receiver.deliveries if d["event_id"] and d["event_id"] not in known]
        f["deliveries of events not on the log"] = len(foreign)
        poisoned = [d for d in receiver.deliveries if d["event_id"] in faults.poison_ids]
        f["deliveries of poison messages"] = len(poisoned)
        report.check("no webhook delivers a poison message (every consumer rejects them)", not poisoned,
                     str(poisoned[:3]))
        report.check("every delivery is of an event on the log", not foreign, str(foreign[:3]))

        # DLQ: one record per injected message per consumer that takes its topic.
        dlq = [orjson.loads(m.value) for m in await read_topic(prefix + "voice.dlq")]
        by_pos: dict[tuple, list[str]] = defaultdict(list)
        others = Counter()
        for r in dlq:
            src = r.get("source") or {}
            pos = (src.get("topic"), src.get("partition"), src.get("offset"))
            if pos in faults.injected:
                by_pos[pos].append(r["consumer"])
            else:
                others[(r.get("consumer"), r.get("code"))] += 1
        want_n = sum(len(c) for _, c in faults.injected.values())
        f["DLQ records for injected messages"] = f"{sum(len(v) for v in by_pos.values())} (expected {want_n})"
        f["other DLQ records"] = {f"{c}/{k}": n for (c, k), n in others.items()}
        for pos, (name, consumers) in faults.injected.items():
            got = Counter(by_pos.get(pos, []))
            report.check(f"DLQ for {name!r}: one record per consumer {sorted(consumers)}",
                         got == Counter(consumers), f"got {dict(got)}")
        unexpected_codes = {k: n for k, n in others.items() if k[1] != "request_abandoned"}
        report.check("no DLQ record other than the injected messages' and abandoned requests'",
                     not unexpected_codes, str(unexpected_codes))
        f["service exits not caused by the driver"] = len(sup.unexpected)
        report.check("no service exited unless the driver killed it", not sup.unexpected,
                     "; ".join(f"{n} rc={rc}: {sup.log(n).read_text(errors='replace')[-600:]}"
                               for n, rc in sup.unexpected[:3]))

        # Projections equal a fresh rebuild.
        dry = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "services.cli", "replay", "--dry-run"], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=600)
        lines = [ln.strip() for ln in dry.stdout.splitlines() if " rows=" in ln]
        f["replay --dry-run"] = "; ".join(ln.split()[0] + " " + ln.split()[-1] for ln in lines) or dry.stdout[-300:]
        report.check("projections equal a fresh rebuild (replay --dry-run)",
                     dry.returncode == 0 and "MISMATCH" not in dry.stdout and len(lines) == 6
                     and all(ln.endswith(" match") for ln in lines), dry.stdout[-1500:] + dry.stderr[-1500:])
        projector_poison = sum("projector" in c for pos, (_, c) in faults.injected.items())
        report.check(f"replay skips the {projector_poison} records the projector dead-letters",
                     f"skipped {projector_poison} records" in dry.stdout if projector_poison
                     else "records the projector cannot apply" not in dry.stdout, dry.stdout[-600:])

        f["load duration"] = f"{load_s:.0f} s ({cfg.calls} calls at {cfg.rate:g}/s, sandbox speed {cfg.speed:g})"
        f["settle (last call ended -> webhooks + projector caught up)"] = f"{settle_s:.1f} s"
        f["faults injected"] = len(fault_log)
        f["instances per service"] = cfg.replicas
        f["Kafka"] = f"cluster {cfg.bootstrap}" if cfg.bootstrap else "the stack's broker"
        f["calls completed per second of load"] = f"{len(once) / load_s:.2f}" if load_s else "-"
        return report
    except Exception as exc:  # the run reports, never crashes
        import traceback

        report.check("the driver ran to the end", False, "".join(traceback.format_exception(exc))[-3000:])
        return report
    finally:
        faults.thaw()
        for t in tasks:
            t.cancel()
        sup.stop_all()
        try:
            await receiver.stop()
        except Exception:  # noqa: BLE001 - never started
            pass
        if faults.kafka_stopped or not await asyncio.to_thread(lambda: stack.status()["kafka"]):
            await asyncio.to_thread(stack.kafka_up)
        await _delete_topics(prefix)  # a broker's restart time grows with its partitions
        try:
            await conn.execute("DELETE FROM sandbox_callees WHERE account_id = $1", acct["id"])
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()
