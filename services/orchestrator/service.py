"""Orchestrator I/O: consume commands + events, decide, publish, persist — in that order.

Exactly-once in effect, without Kafka transactions (faust/aiokafka EOS is unreliable,
see docs/architecture.md): outputs are published (acks=all) *before* the state and
offsets commit in one Postgres transaction. A crash in between re-decides the same
inputs from the same state, which re-publishes the same derived ids; every consumer
(gateway, projector, webhooks) dedupes by id, the gateway by call as well.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timezone

import orjson

from events import DecodeError, Envelope, decode, decode_payload, derive_id, topics
from services.common import db
from services.common.kafka import SeekToStored, dlq_record, make_consumer, make_producer, publish_many
from services.common.logging import configure
from services.common.service import serve
from services.orchestrator.decide import COMMAND_INPUTS, EVENT_INPUTS, INPUTS, Source, decide
from services.orchestrator.intake import validate_place_call
from services.orchestrator.outputs import CancelTimer, Emit, NextDialSlot, StartTimer
from services.orchestrator.state import CallState

log = configure("orchestrator")
SCOPE = os.environ.get("CANARY_TOPIC_PREFIX", "")
# The topics the inputs come from (decide.INPUTS lists them); on the event log, anything
# that is not an input is skipped cheaply.
_TOPIC = {Source.COMMAND: topics.COMMANDS, Source.EVENT: topics.EVENTS}
SUBSCRIPTION = list(dict.fromkeys(_TOPIC[r.source] for r in INPUTS.values()))


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def _init(conn) -> None:
    await conn.set_type_codec("jsonb", encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads,
                              schema="pg_catalog")


class Orchestrator:
    def __init__(self):
        self.group = SCOPE + "orchestrator"
        self.positions: dict[tuple[str, int], int] = {}
        self.stopping = asyncio.Event()
        self.cps_cache: dict[str, tuple[float, float]] = {}  # account -> (expires, calls/s)

    async def start(self) -> None:
        self.conn = await db.connect()
        await _init(self.conn)
        self.timer_conn = await db.connect()
        await _init(self.timer_conn)
        self.producer = make_producer(linger_ms=1)  # every output is on some caller's critical path
        await self.producer.start()
        self.consumer = make_consumer(group_id=self.group)
        await self._warm_up()
        self.consumer.subscribe(SUBSCRIPTION,
                                listener=SeekToStored(lambda: self.consumer, self._stored))
        await self.consumer.start()
        log.info("orchestrator started", scope=SCOPE)

    async def _warm_up(self) -> None:
        """Validate and decide one example call before taking traffic.

        The first validation imports the voice catalog, the SSML parser and phone-number
        metadata (~0.3 s); paid here, not by the first callers.
        """
        from events.catalog import EXAMPLE_REQUEST

        sample = Envelope(type="PlaceCall", call_id="call_warmup", account_id="acct_warmup", data=EXAMPLE_REQUEST)
        await validate_place_call(self.conn, sample)
        decide(None, sample, _now())

    async def _stored(self) -> dict[tuple[str, int], int]:
        rows = await self.conn.fetch(
            "SELECT topic, kafka_partition, next_offset FROM orch_offsets WHERE consumer = $1", self.group)
        self.positions = {(r["topic"], r["kafka_partition"]): r["next_offset"] for r in rows}
        return dict(self.positions)

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()
        await self.conn.close()
        await self.timer_conn.close()

    async def _cps(self, account_id: str) -> float:
        """The account's calls-per-second limit, re-read at most once a minute."""
        now = asyncio.get_running_loop().time()
        hit = self.cps_cache.get(account_id)
        if hit is None or hit[0] < now:
            v = await self.conn.fetchval("SELECT calls_per_second FROM accounts WHERE id = $1", account_id)
            hit = self.cps_cache[account_id] = (now + 60, float(v) if v else float(os.environ.get("CANARY_CPS", "10")))
        return hit[1]

    async def run_once(self, timeout_ms: int = 200) -> int:
        batches = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=1000)
        inputs: list[tuple[Envelope, list | None]] = []
        upto: dict[tuple[str, int], int] = {}
        dlq: list[tuple[bytes, bytes]] = []
        emits: list[Envelope] = []
        flow_defs: dict[str, dict] = {}
        for tp, msgs in batches.items():
            for m in msgs:
                key = (tp.topic, tp.partition)
                if m.offset < self.positions.get(key, 0):
                    continue
                upto[key] = m.offset + 1
                env = decode(m.value)
                if isinstance(env, DecodeError):
                    # Bad events are the projector's to dead-letter (once); bad commands are ours.
                    if tp.topic == topics.COMMANDS:
                        dlq.append(self._dlq(env, tp, m))
                    continue
                if tp.topic == topics.COMMANDS:
                    if env.type not in COMMAND_INPUTS:
                        dlq.append(self._dlq(DecodeError("unknown_command", f"{env.type} is not a command",
                                                         env.type), tp, m))
                        continue
                    errors = None
                    if env.type == "PlaceCall":
                        errors = await validate_place_call(self.conn, env)
                        if not errors and env.data.get("flow_id"):
                            flow_defs[env.id], errors = await self._stored_flow(env)
                        if errors:
                            dlq.append(self._dlq(DecodeError("invalid_payload", "PlaceCall rejected: " + "; ".join(
                                f"{e.get('field')}: {e.get('message')}" for e in errors), env.type,
                                tuple(errors)), tp, m))
                    elif isinstance(decode_payload(env), DecodeError):
                        dlq.append(self._dlq(decode_payload(env), tp, m))
                        continue
                    inputs.append((env, errors))
                elif env.type in EVENT_INPUTS:
                    inputs.append((env, None))
        if not upto:
            return 0
        call_ids = list(dict.fromkeys(e.call_id for e, _ in inputs))
        states = {r["call_id"]: CallState.from_json(r["state"]) for r in await self.conn.fetch(
            "SELECT call_id, state FROM orch_calls WHERE call_id = ANY($1::text[])", call_ids)
            if r["state"]} if call_ids else {}  # an empty state is a call not seen yet
        accounts = list(dict.fromkeys(e.account_id for e, _ in inputs if e.type == "PlaceCall"))
        pacing = {r["account_id"]: r["next_slot"] for r in await self.conn.fetch(
            "SELECT account_id, next_slot FROM orch_pacing WHERE scope = $1 AND account_id = ANY($2::text[])",
            SCOPE, accounts)} if accounts else {}
        timers: dict[tuple[str, str], tuple] = {}
        touched: dict[str, str] = {}
        now = _now()
        for env, errors in inputs:
            dec = decide(states.get(env.call_id), env, now, pacing_slot=pacing.get(env.account_id),
                         cps=await self._cps(env.account_id) if env.type == "PlaceCall" else 10.0,
                         validation_errors=errors, flow_def=flow_defs.get(env.id))
            states[env.call_id] = dec.state
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
        # Outputs (and DLQ records) go to Kafka while the state, timers, pacing and offsets
        # are written; the transaction commits only once Kafka has acked every output, so
        # a position is never durable before what it produced.
        sending = asyncio.ensure_future(self._send(emits, dlq))
        try:
            await self._write(touched, states, timers, accounts, pacing, upto, sending)
        finally:
            if not sending.done():
                sending.cancel()
        self.positions.update(upto)
        return len(upto)

    async def _send(self, emits: list[Envelope], dlq: list[tuple[bytes, bytes]]) -> None:
        await publish_many(self.producer, topics.EVENTS, emits)
        if dlq:
            await asyncio.gather(*[await self.producer.send(topics.DLQ, raw, key=k) for k, raw in dlq])

    async def _write(self, touched, states, timers, accounts, pacing, upto, sending: asyncio.Future) -> None:
        async with self.conn.transaction():
            if touched:
                await self.conn.executemany(
                    "INSERT INTO orch_calls (call_id, account_id, state, updated_at) VALUES ($1, $2, $3, now())"
                    " ON CONFLICT (call_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now()",
                    [(cid, acct, states[cid].to_json()) for cid, acct in touched.items()])
            sets = [(cid, name, acct, due, tok, SCOPE) for (cid, name), (acct, due, tok) in timers.items() if due]
            clears = [(cid, name) for (cid, name), (_, due, _) in timers.items() if due is None]
            if clears:
                await self.conn.executemany("DELETE FROM orch_timers WHERE call_id = $1 AND name = $2", clears)
            if sets:
                await self.conn.executemany(
                    "INSERT INTO orch_timers (call_id, name, account_id, due_at, token, scope)"
                    " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (call_id, name)"
                    " DO UPDATE SET due_at = EXCLUDED.due_at, token = EXCLUDED.token", sets)
            if accounts:
                await self.conn.executemany(
                    "INSERT INTO orch_pacing (scope, account_id, next_slot) VALUES ($1, $2, $3)"
                    " ON CONFLICT (scope, account_id) DO UPDATE SET next_slot = EXCLUDED.next_slot",
                    [(SCOPE, a, pacing[a]) for a in accounts if a in pacing])
            await self.conn.executemany(
                "INSERT INTO orch_offsets (consumer, topic, kafka_partition, next_offset) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (consumer, topic, kafka_partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
                [(self.group, t, p, o) for (t, p), o in upto.items()])
            await sending

    async def _stored_flow(self, env: Envelope) -> tuple[dict | None, list | None]:
        """The latest version of a stored flow, or the error that rejects the call."""
        from services.lib.flows.store import load_definition

        found = await load_definition(self.conn, env.account_id, env.data["flow_id"])
        if found is None:
            return None, [{"code": "flow_not_found", "field": "flow_id",
                           "message": f"no flow {env.data['flow_id']!r} in this account"}]
        version, doc = found
        return {"version": version, "flow": doc}, None

    def _dlq(self, err: DecodeError, tp, m) -> tuple[bytes, bytes]:
        log.warning("message rejected to dlq", code=err.code, reason=err.reason, topic=tp.topic,
                    partition=tp.partition, offset=m.offset)
        return (f"{tp.topic}:{tp.partition}:{m.offset}".encode(),
                dlq_record(err.reason, err.code, source_topic=tp.topic, partition=tp.partition, offset=m.offset,
                           raw=m.value, type=err.type, errors=err.errors))

    async def fire_timers(self) -> int:
        """Publish timer.fired for every due timer (and forget it), at least once."""
        async with self.timer_conn.transaction():
            rows = await self.timer_conn.fetch(
                "SELECT call_id, name, account_id, token FROM orch_timers WHERE scope = $1 AND due_at <= now()"
                " ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED", SCOPE)
            if not rows:
                return 0
            evs = [Envelope(type="timer.fired", call_id=r["call_id"], account_id=r["account_id"],
                            data={"timer": r["name"], "token": r["token"]},
                            id=derive_id(r["token"] or r["call_id"], "timer:" + r["name"]),
                            causation_id=None) for r in rows]
            await publish_many(self.producer, topics.EVENTS, evs)
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
            while not self.stopping.is_set():
                await self.run_once()
        finally:
            self.stopping.set()
            await timers


async def main() -> None:
    await serve(Orchestrator(), log, "orchestrator")


if __name__ == "__main__":
    asyncio.run(main())
