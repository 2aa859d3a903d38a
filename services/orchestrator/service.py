"""Orchestrator I/O: consume commands + events, decide, persist, publish — then commit.

Exactly-once in effect, without Kafka transactions (faust/aiokafka EOS is unreliable,
see docs/architecture.md). Built on the consume-with-tracking block
(``services.common.consumer``): per batch, one Postgres transaction holds the calls'
state, timers, pacing and the consumed offsets; the outputs are published (acks=all)
while the state is written and acknowledged *before* the commit. What Postgres would
refuse (U+0000) is refused before anything is sent, so a refused input publishes nothing. A crash in between re-decides the same inputs
from the same state, which re-publishes the same derived ids; every consumer (gateway,
projector, webhooks) dedupes by id, the gateway by call as well. An input that cannot be
read, that `decide` fails on or that Postgres refuses is dead-lettered on its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timezone

import asyncpg
import orjson

from events import DecodeError, Envelope, derive_id, encode, topics
from events import trace
from services.common import db, tracing
from services.common.config import settings
from services.common.consumer import Batch, Consumer, KafkaDeadLetters, PostgresTracking, Processor, Source
from services.common.kafka import known_partition_count, make_producer, publish_many, type_headers
from services.common.logging import configure
from services.common.service import serve
from services.orchestrator.decide import COMMAND_INPUTS, EVENT_INPUTS, INPUTS, Source as InputSource, decide
from services.orchestrator.intake import IntakeAuth, validate_leg, validate_place_call
from services.lib.intake import check_update_call
from services.orchestrator.outputs import CancelTimer, Emit, NextDialSlot, StartTimer
from services.orchestrator.state import CallState

log = configure("orchestrator")
# The topics the inputs come from (decide.INPUTS lists them); on the event log, anything
# that is not an input is skipped cheaply.
_TOPIC = {InputSource.COMMAND: topics.commands, InputSource.EVENT: topics.events}


def subscription() -> list[str]:
    """The consumer's topics, in the order decide.INPUTS first names them."""
    return list(dict.fromkeys(_TOPIC[r.source]() for r in INPUTS.values()))


def sources() -> list[Source]:
    """What the consumer takes from each topic: commands it does not know are dead-lettered
    (nobody else reads that topic), other events are skipped. PlaceCall payloads are checked
    by the intake (`validate_place_call`), which rejects the call with its errors."""
    return [Source(topics.commands(), types=COMMAND_INPUTS, reject_others=True,
                   unchecked=frozenset({"PlaceCall", "UpdateCall"})),
            Source(topics.events(), types=EVENT_INPUTS)]


def __getattr__(name: str):
    if name == "SUBSCRIPTION":  # read when asked: the topic prefix is read at call time
        return subscription()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_NUL = b"\\u0000"  # how JSON writes U+0000, which neither jsonb nor text columns store


def _refuse_unstorable(rows: list[tuple[str, str, bytes]], out: list[tuple[bytes, bytes, list]]) -> None:
    """Raise what Postgres would raise for a NUL in a call's state, its ids or its outputs.

    Checked before the outputs are sent: the block then dead-letters the input that caused
    it (alone, by bisection, as ``data_error`` 22P05) and nothing it produced has left.
    """
    for cid, acct, state in rows:
        if _NUL in state or "\x00" in cid or "\x00" in acct:
            raise asyncpg.exceptions.UntranslatableCharacterError(
                f"unsupported Unicode escape sequence: \\u0000 in the state of call {cid!r}")
    for value, _, _ in out:
        if _NUL in value:
            raise asyncpg.exceptions.UntranslatableCharacterError(
                "unsupported Unicode escape sequence: \\u0000 in an output event")


async def _accept(conn, call_ids: list[str]) -> set[str]:
    """Mark the API's pending requests of these calls accepted; returns the calls whose request
    the API abandoned (it answered 503). A call with no request row came from another producer.

    The rows are locked first: an API abandoning one at this moment is waited for, and the
    state read is the one it committed (exact acceptance, docs/architecture.md).
    """
    if not call_ids:
        return set()
    rows = await conn.fetch(
        "WITH locked AS (SELECT id, state FROM call_requests WHERE id = ANY($1::text[]) FOR UPDATE),"
        " upd AS (UPDATE call_requests c SET state = 'accepted' FROM locked l"
        "         WHERE c.id = l.id AND l.state IN ('pending', 'published') RETURNING c.id)"
        " SELECT id FROM locked WHERE state = 'abandoned'", call_ids)
    return {r["id"] for r in rows}


def _check_service_key(s) -> None:
    """Signed intake in production needs a real service key (the API signs with it)."""
    from services.common.signing import InsecureSecretError, secret_problem

    if s.environment != "development":
        problem = secret_problem("CANARY_KAFKA_SERVICE_KEY", s.kafka_service_key)
        if problem:
            raise InsecureSecretError(problem + ": set it (32+ random bytes) on the API and the orchestrator")


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def _init(conn) -> None:
    await conn.set_type_codec("jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
                              schema="pg_catalog")


async def _connect():
    conn = await db.connect()
    await _init(conn)
    return conn


class Orchestrator:
    def __init__(self):
        self.scope = topics.prefix()  # timers and pacing of this deployment (tests run several)
        self.group = topics.scoped("orchestrator")
        self.stopping = asyncio.Event()
        self.cps_cache: dict[str, tuple[float, float]] = {}  # account -> (expires, calls/s)
        self.intake_auth = IntakeAuth.from_settings(settings())

    async def start(self) -> None:
        if self.intake_auth.enabled:
            _check_service_key(settings())
        self.tracking = PostgresTracking("orch_offsets", self.group, connect=_connect)
        await self.tracking.start()
        self.timer_conn = await _connect()
        self.producer = make_producer(linger_ms=1)  # every output is on some caller's critical path
        await self.producer.start()
        await self._warm_up()
        self.processor = Processor("orchestrator", sources(), self.handle, self.tracking,
                                   KafkaDeadLetters(self.producer), log=log, stopping=self.stopping)
        self.consumer = Consumer(self.processor, group_id=self.group, batch_max=1000)
        await self.consumer.start()
        log.info("orchestrator started", scope=self.scope)

    @property
    def conn(self):
        return self.tracking.conn

    async def _warm_up(self) -> None:
        """Validate and decide one example call before taking traffic.

        The first validation imports the voice catalog, the SSML parser and phone-number
        metadata (~0.3 s); paid here, not by the first callers.
        """
        from events.catalog import EXAMPLE_REQUEST

        sample = Envelope(type="PlaceCall", call_id="call_warmup", account_id="acct_warmup", data=EXAMPLE_REQUEST)
        await validate_place_call(self.conn, sample)
        decide(None, sample, _now())

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()
        await self.tracking.close()
        await self.timer_conn.close()

    async def _cps(self, conn, account_id: str) -> float:
        """The account's calls-per-second limit, re-read at most once a minute."""
        now = asyncio.get_running_loop().time()
        hit = self.cps_cache.get(account_id)
        if hit is None or hit[0] < now:
            v = await conn.fetchval("SELECT calls_per_second FROM accounts WHERE id = $1", account_id)
            hit = self.cps_cache[account_id] = (now + 60, float(v) if v else settings().calls_per_second)
        return hit[1]

    async def run_once(self, timeout_ms: int = 200) -> int:
        return await self.consumer.run_once(timeout_ms)

    async def handle(self, batch: Batch) -> None:
        """Decide a batch of inputs, write state, timers and pacing, then publish the outputs.

        Runs in the block's transaction, which also stores the offsets. States and outputs
        are encoded and checked first, so an input whose state or outputs Postgres would
        refuse (dead-lettered alone by the block) has published nothing; then the outputs
        are sent while the state is written, and the commit waits for every output's ack,
        so a position is never durable before what it produced.
        """
        conn = batch.conn
        inputs: list[tuple[Envelope, list | None]] = []
        flow_defs: dict[str, dict] = {}
        records = await self._authenticated(batch)
        for r in records:
            env, errors = r.env, None
            if env.type == "PlaceCall":
                errors = await validate_place_call(conn, env)
                if not errors and env.data.get("flow_id"):
                    flow_defs[env.id], errors = await self._stored_flow(conn, env)
            elif env.type == "call.received" and env.data.get("flow_id"):
                # A number's stored flow, gone since the gateway routed the call: answered, then
                # hung up (the caller hears nothing rather than ringing forever).
                flow_defs[env.id], _ = await self._stored_flow(conn, env)
            elif env.type == "call.leg.requested":
                # A dial step's caller ID: the account's verified number (the call is rejected, not
                # dead-lettered: the event is a fact the orchestrator emitted).
                inputs.append((env, await validate_leg(conn, env)))
                continue
            elif env.type == "UpdateCall":
                # The API's checks again (any producer may write the topic), then its stored flow.
                _, errors = check_update_call(env.data)
                if not errors and env.data.get("flow_id"):
                    flow_defs[env.id], errors = await self._stored_flow(conn, env)
                    if not errors and env.data.get("step") and env.data["step"] not in (
                            flow_defs[env.id]["flow"].get("steps") or {}):
                        errors = [{"code": "invalid_step", "field": "step",
                                   "message": f"the flow has no step {env.data['step']!r}"}]
            if errors:  # the call is rejected (call.rejected; an update: call.updated) and the command dead-lettered
                batch.reject(r, DecodeError("invalid_payload", f"{env.type} rejected: " + "; ".join(
                    f"{e.get('field')}: {e.get('message')}" for e in errors), env.type, tuple(errors)))
            inputs.append((env, errors))
        abandoned = await _accept(conn, [e.call_id for e, errors in inputs if e.type == "PlaceCall" and not errors])
        if abandoned:
            kept = []
            for r, (env, errors) in zip(records, inputs):
                if env.type == "PlaceCall" and env.call_id in abandoned:
                    batch.reject(r, DecodeError("request_abandoned", "PlaceCall refused: the API answered this "
                                                "request with an error (its send landed after all)", env.type))
                else:
                    kept.append((env, errors))
            inputs = kept
        call_ids = list(dict.fromkeys(e.call_id for e, _ in inputs))
        states = {r["call_id"]: CallState.from_json(r["state"]) for r in await conn.fetch(
            "SELECT call_id, state FROM orch_calls WHERE call_id = ANY($1::text[])", call_ids)
            if r["state"]} if call_ids else {}  # an empty state is a call not seen yet
        accounts = list(dict.fromkeys(e.account_id for e, _ in inputs if e.type == "PlaceCall"))
        pacing = {r["account_id"]: r["next_slot"] for r in await conn.fetch(
            "SELECT account_id, next_slot FROM orch_pacing WHERE scope = $1 AND account_id = ANY($2::text[])",
            self.scope, accounts)} if accounts else {}
        timers: dict[tuple[str, str], tuple] = {}
        touched: dict[str, str] = {}
        emits: list[Envelope] = []
        now = _now()
        partitions = known_partition_count(getattr(self.consumer, "consumer", None), topics.events())
        for env, errors in inputs:
            before = states.get(env.call_id)
            if env.traceparent is None and before is not None and before.traceparent is not None:
                # a timer: the call's trace
                env = dataclasses.replace(env, traceparent=before.traceparent, tracestate=before.tracestate)
            cps = await self._cps(conn, env.account_id) if env.type == "PlaceCall" else 10.0
            with tracing.handling(env, "orchestrator decide"):
                dec = decide(before, env, now, pacing_slot=pacing.get(env.account_id), cps=cps,
                             validation_errors=errors, flow_def=flow_defs.get(env.id), partitions=partitions)
            state = dec.state
            if state.traceparent is None and trace.parse(env.traceparent) is not None:
                state = dataclasses.replace(state, traceparent=env.traceparent,
                                            tracestate=trace.parse_state(env.tracestate))
            states[env.call_id] = state
            touched[env.call_id] = env.account_id
            for o in dec.outputs:
                if type(o) is Emit:
                    emits.append(o.event)
                elif type(o) is StartTimer:
                    timers[(env.call_id, o.name)] = (env.account_id, o.due, o.token)
                elif type(o) is CancelTimer:
                    timers[(env.call_id, o.name)] = (env.account_id, None, "")
                elif type(o) is NextDialSlot:
                    pacing[env.account_id] = o.at
        # Encoded once, and checked for what Postgres would refuse before anything leaves: the
        # outputs can then go out while the state is written (their acks overlap the writes).
        rows = [(cid, acct, orjson.dumps(states[cid].to_json())) for cid, acct in touched.items()]
        out = [(encode(e), e.call_id.encode(), type_headers(e)) for e in emits]
        _refuse_unstorable(rows, out)
        if out:
            batch.before_commit(await self._send(out))
        await self._write(conn, rows, timers, accounts, pacing)

    async def _authenticated(self, batch: Batch) -> list:
        """The batch's records, less the commands whose producer is not authenticated (with
        CANARY_KAFKA_INTAKE_AUTH=signed): those are dead-lettered `unauthenticated_command`
        and nothing is emitted for them (not even call.rejected, which would write into the
        named account's timeline)."""
        if not self.intake_auth.enabled:
            return batch.records
        commands = topics.commands()
        keys: dict[str, str | None] = {}
        kept = []
        for r in batch.records:
            why = await self.intake_auth.refusal(batch.conn, r, keys) if r.topic == commands else None
            if why is None:
                kept.append(r)
            else:
                log.warning("unauthenticated_command", call_id=r.env.call_id, type=r.env.type, reason=why)
                batch.reject(r, DecodeError("unauthenticated_command", f"{r.env.type} refused: {why}", r.env.type))
        return kept

    async def _send(self, out: list[tuple[bytes, bytes, list]]) -> asyncio.Future:
        topic = topics.events()
        futs = [await self.producer.send(topic, value, key=key, headers=headers) for value, key, headers in out]
        return asyncio.gather(*futs)

    async def _write(self, conn, rows, timers, accounts, pacing) -> None:
        if rows:
            await conn.executemany(
                "INSERT INTO orch_calls (call_id, account_id, state, updated_at) VALUES ($1, $2, $3::text::jsonb, now())"
                " ON CONFLICT (call_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
                [(cid, acct, state.decode()) for cid, acct, state in rows])
        sets = [(cid, name, acct, due, tok, self.scope) for (cid, name), (acct, due, tok) in timers.items() if due]
        clears = [(cid, name) for (cid, name), (_, due, _) in timers.items() if due is None]
        if clears:
            await conn.executemany("DELETE FROM orch_timers WHERE call_id = $1 AND name = $2", clears)
        if sets:
            await conn.executemany(
                "INSERT INTO orch_timers (call_id, name, account_id, due_at, token, scope)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (call_id, name)"
                " DO UPDATE SET due_at = EXCLUDED.due_at, token = EXCLUDED.token", sets)
        if accounts:
            await conn.executemany(
                "INSERT INTO orch_pacing (scope, account_id, next_slot) VALUES ($1, $2, $3)"
                " ON CONFLICT (scope, account_id) DO UPDATE SET next_slot = EXCLUDED.next_slot",
                [(self.scope, a, pacing[a]) for a in accounts if a in pacing])

    async def _stored_flow(self, conn, env: Envelope) -> tuple[dict | None, list | None]:
        """The latest version of a stored flow, or the error that rejects the call."""
        from services.lib.flows.store import load_definition

        found = await load_definition(conn, env.account_id, env.data["flow_id"])
        if found is None:
            return None, [{"code": "flow_not_found", "field": "flow_id",
                           "message": f"no flow {env.data['flow_id']!r} in this account"}]
        version, doc = found
        return {"version": version, "flow": doc}, None

    async def fire_timers(self) -> int:
        """Publish timer.fired for every due timer (and forget it), at least once."""
        async with self.timer_conn.transaction():
            rows = await self.timer_conn.fetch(
                "SELECT call_id, name, account_id, token FROM orch_timers WHERE scope = $1 AND due_at <= now()"
                " ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED", self.scope)
            if not rows:
                return 0
            evs = [Envelope(type="timer.fired", call_id=r["call_id"], account_id=r["account_id"],
                            data={"timer": r["name"], "token": r["token"]},
                            id=derive_id(r["token"] or r["call_id"], "timer:" + r["name"]),
                            causation_id=None) for r in rows]
            await publish_many(self.producer, topics.events(), evs)
            await self.timer_conn.executemany(
                "DELETE FROM orch_timers WHERE call_id = $1 AND name = $2 AND token = $3",
                [(r["call_id"], r["name"], r["token"]) for r in rows])
        return len(rows)

    async def _timer_loop(self) -> None:
        from services.common.housekeeping import sweep

        next_sweep = 0.0
        loop = asyncio.get_running_loop()
        while not self.stopping.is_set():
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + 60
                try:
                    swept = await sweep(self.timer_conn)
                    if any(swept.values()):
                        log.info("housekeeping", **swept)
                except Exception as exc:
                    log.error("housekeeping failed", error=str(exc))
            try:
                fired = await self.fire_timers()
            except Exception as exc:  # keep the loop alive; the next tick retries
                log.error("timer loop error", error=str(exc))
                fired = 0
            if not fired:
                try:
                    await asyncio.wait_for(self.stopping.wait(), 0.05)
                except asyncio.TimeoutError:
                    pass

    async def run(self) -> None:
        timers = asyncio.create_task(self._timer_loop())
        try:
            await self.consumer.run()
        finally:
            self.stopping.set()
            await timers


async def main() -> None:
    await serve(Orchestrator(), log, "orchestrator")


if __name__ == "__main__":
    asyncio.run(main())
