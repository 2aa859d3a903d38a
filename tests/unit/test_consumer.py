"""The consume-with-tracking block without a broker: checks, split-to-find-the-record, DLQ,
transient retry with backoff, positions stored with the state (services/common/consumer.py)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass

import asyncpg
import orjson
import pytest
from aiokafka import errors as kafka_errors
from hypothesis import given, settings, strategies as st

from events import DecodeError, Envelope, new_envelope
from events import decode as _decode_env
from services.common.consumer import (Backoff, Batch, CollectedDeadLetters, KafkaDeadLetters, Processor, Record,
                                      Rejected, Skipped, Source, Stopped, check, check_envelope, is_transient)

TOPIC = "t.voice.call.events"
CALL = "call_unit"


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    value: bytes | None


def ev(type_: str, data: dict | None = None, **env) -> dict:
    e = new_envelope(type_, CALL, "acct_unit", data or {}).to_dict()
    e.update(env)
    return e


def raw(obj) -> bytes:
    return obj if isinstance(obj, bytes) else orjson.dumps(obj)


def msgs(*objs, partition: int = 0, start: int = 0, topic: str = TOPIC) -> list[Msg]:
    return [Msg(topic, partition, start + i, raw(o)) for i, o in enumerate(objs)]


RINGING = lambda **kw: ev("call.ringing", {"early_media": False}, **kw)  # noqa: E731
POISON = {
    "id not a UUID": RINGING(id="evt-not-a-uuid"),
    "causation_id not a UUID": RINGING(causation_id="cause-1"),
    "correlation_id not a UUID": RINGING(correlation_id=42),
    "occurred_at yesterday": RINGING(occurred_at="yesterday"),
    "occurred_at without offset": RINGING(occurred_at="2026-01-01T00:00:00"),
    "recording.completed without recording_id": ev("recording.completed", {"wav_ref": "sha256:1.wav",
                                                                          "duration_ms": 10}),
    "tts.rendered without audio_ref": ev("tts.rendered", {"duration_ms": 10}),
    "audio.fetched without audio_ref": ev("audio.fetched", {"duration_ms": 10}),
    "garbage bytes": b"\x00\xffnot json{",
}


# --- checks ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(POISON))
def test_every_poison_message_is_rejected_with_a_reason(name):
    item = Source(TOPIC).item(Msg(TOPIC, 1, 7, raw(POISON[name])))
    assert type(item) is Rejected, name
    assert item.error.code in ("invalid_envelope", "invalid_payload", "malformed_json")
    assert item.error.reason and (item.partition, item.offset) == (1, 7)
    assert isinstance(check(raw(POISON[name])), DecodeError)


def test_envelope_checks_name_the_field():
    assert "envelope field id must be a UUID" in Source(TOPIC).item(msgs(POISON["id not a UUID"])[0]).error.reason
    err = check_envelope(Envelope(type="call.ringing", call_id=CALL, account_id="a", occurred_at="yesterday"))
    assert err.code == "invalid_envelope" and "occurred_at" in err.reason and "'yesterday'" in err.reason
    for ok in ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00.123456789+05:30", "2026-01-01T00:00:00-00:00"):
        assert not isinstance(check(raw(RINGING(occurred_at=ok))), DecodeError), ok
    for bad in ("2026-13-01T00:00:00Z", "2026-01-01 00:00:00Z", "2026-01-01t00:00:00z", "2026-01-01"):
        assert isinstance(check(raw(RINGING(occurred_at=bad))), DecodeError), bad
    env, model = check(raw(RINGING(causation_id=str(uuid.uuid4()), correlation_id=None)))
    assert env.type == "call.ringing" and model.early_media is False


def test_sources_take_skip_or_reject_by_type():
    events = Source(TOPIC, types=frozenset({"tts.rendered"}))
    assert type(events.item(msgs(RINGING())[0])) is Skipped  # not an input: skipped, not dead-lettered
    assert type(events.item(msgs(ev("call.teleported"))[0])) is Skipped  # unknown, and not ours either
    assert type(events.item(msgs(POISON["garbage bytes"])[0])) is Rejected  # no type: could be ours
    assert type(events.item(msgs(POISON["tts.rendered without audio_ref"])[0])) is Rejected
    commands = Source("t.voice.call.commands", types=frozenset({"PlaceCall"}), reject_others=True,
                      unchecked=frozenset({"PlaceCall"}))
    other = commands.item(msgs(ev("call.ringing"), topic=commands.topic)[0])
    assert type(other) is Rejected and other.error.code == "unknown_command"
    place = commands.item(msgs(ev("PlaceCall", {"to": "not a number"}), topic=commands.topic)[0])
    assert type(place) is Record and place.payload is None  # the handler validates it (the intake)
    bad_env = commands.item(msgs(ev("PlaceCall", {}, id="x"), topic=commands.topic)[0])
    assert type(bad_env) is Rejected and bad_env.error.code == "invalid_envelope"


@pytest.mark.parametrize("exc,transient", [
    (asyncpg.exceptions.UntranslatableCharacterError("unsupported Unicode escape sequence"), False),  # 22P05
    (asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence"), False),  # 22021
    (asyncpg.exceptions.NotNullViolationError("null value"), False),  # 23502
    (asyncpg.exceptions.ProgramLimitExceededError("index row size"), False),  # 54000
    (asyncpg.exceptions._base.DataError("invalid input for query argument $4"), False),  # client side
    (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), True),
    (asyncpg.exceptions.SerializationError("could not serialize"), True),  # 40001
    (asyncpg.exceptions.DeadlockDetectedError("deadlock"), True),
    (asyncpg.exceptions.AdminShutdownError("terminating connection"), True),
    (asyncpg.exceptions.UndefinedTableError("relation does not exist"), True),  # not the record's fault
    (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), True),
    (ConnectionResetError(), True), (OSError("network unreachable"), True), (asyncio.TimeoutError(), True),
    (FileNotFoundError("sha256:x.wav"), False),
    (kafka_errors.KafkaConnectionError(), True), (kafka_errors.KafkaTimeoutError(), True),
    (kafka_errors.NotLeaderForPartitionError(), True), (kafka_errors.MessageSizeTooLargeError(), False),
    (ValueError("bad"), False), (KeyError("audio_ref"), False),
])
def test_transient_or_the_records_fault_by_exception_type(exc, transient):
    assert is_transient(exc) is transient


# --- the processor, with a store that behaves like a transaction ---------------------------

class Store:
    """Committed state + positions; a transaction's writes are kept only if it commits."""

    transactional = True

    def __init__(self):
        self.applied: list[str] = []  # event ids, in commit order
        self.offsets: dict[tuple[str, int], int] = {}
        self._tx: list[str] | None = None
        self._tx_offsets: dict | None = None
        self.conn = self
        self.commits = 0
        self.recovered = 0
        self.fail_load = 0

    async def load(self):
        if self.fail_load:
            self.fail_load -= 1
            raise ConnectionRefusedError("postgres down")
        return dict(self.offsets)

    @contextlib.asynccontextmanager
    async def transaction(self):
        self._tx, self._tx_offsets = [], {}
        try:
            yield
        except BaseException:
            self._tx = self._tx_offsets = None
            raise
        self.applied += self._tx
        self.offsets.update(self._tx_offsets)
        self._tx = self._tx_offsets = None
        self.commits += 1

    async def fence(self, keys):
        return {k: self.offsets[k] for k in keys if k in self.offsets}

    async def save(self, upto):
        self._tx_offsets.update(upto)

    async def recover(self):
        self.recovered += 1

    def write(self, env_id: str):
        assert self._tx is not None, "written outside the transaction"
        self._tx.append(env_id)


class Handler:
    """Fails a batch that holds a poison record, the way Postgres fails a whole COPY."""

    def __init__(self, store: Store, transient: list[BaseException] | None = None):
        self.store, self.transient = store, list(transient or [])
        self.calls = 0

    async def __call__(self, batch: Batch) -> None:
        self.calls += 1
        if self.transient:
            raise self.transient.pop(0)
        for r in batch.records:
            if r.env.data.get("nul"):
                raise asyncpg.exceptions.UntranslatableCharacterError(
                    "unsupported Unicode escape sequence", )
            if r.env.data.get("bug"):
                raise KeyError("audio_ref")
            self.store.write(r.env.id)


def processor(store: Store, handler, dlq=None, **kw) -> tuple[Processor, CollectedDeadLetters]:
    dlq = dlq or CollectedDeadLetters()
    return Processor("unit", [Source(TOPIC)], handler, store, dlq, backoff=Backoff(initial=0.001, cap=0.002),
                     **kw), dlq


async def run(p: Processor, messages) -> dict:
    return await p.process(p.prepare(messages))


async def test_a_failing_batch_is_split_down_to_the_record_and_the_rest_goes_on():
    store = Store()
    good = [ev("dtmf.received", {"digit": str(i % 10)}) for i in range(20)]
    nul = ev("call.answered", {"answered_by": "a\u0000b", "nul": True})
    bug = ev("tts.rendered", {"audio_ref": "sha256:1.wav", "duration_ms": 1, "bug": True})
    log = good[:7] + [nul] + good[7:15] + [bug] + good[15:]
    p, dlq = processor(store, Handler(store))
    upto = await run(p, msgs(*log, partition=3, start=100))
    assert store.applied == [e["id"] for e in good]  # every valid record, in log order, once
    assert upto == store.offsets == {(TOPIC, 3): 100 + len(log)}
    rejected = dlq.sorted()
    assert [(r.partition, r.offset) for r in rejected] == [(3, 107), (3, 116)]
    assert rejected[0].error.code == "data_error" and "22P05" in rejected[0].error.reason
    assert rejected[1].error.code == "handler_error" and "KeyError" in rejected[1].error.reason
    assert orjson.loads(rejected[0].value)["id"] == nul["id"]  # the original bytes go with it
    assert p.stats.splits > 0 and p.stats.rejected == 2 and p.stats.handled == len(good)


async def test_records_rejected_by_the_checks_never_reach_the_handler():
    store = Store()
    seen = []

    async def handler(batch):
        seen.extend(r.env.id for r in batch.records)
        for r in batch.records:
            store.write(r.env.id)

    good = [ev("call.ringing"), ev("call.answered")]
    log = [good[0], *POISON.values(), good[1]]
    p, dlq = processor(store, handler)
    await run(p, msgs(*log))
    assert seen == store.applied == [g["id"] for g in good]
    assert [r.offset for r in dlq.sorted()] == list(range(1, 1 + len(POISON)))
    assert store.offsets == {(TOPIC, 0): len(log)} and store.commits == 1  # one transaction: nothing failed


async def test_transient_failures_retry_the_same_batch_with_backoff():
    store = Store()
    errors = [asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
              ConnectionResetError("reset"), asyncio.TimeoutError(), kafka_errors.KafkaConnectionError("no broker")]
    handler = Handler(store, transient=errors)
    p, dlq = processor(store, handler)
    log = [ev("call.ringing"), ev("call.answered")]
    await run(p, msgs(*log))
    assert store.applied == [e["id"] for e in log] and not dlq.records
    assert handler.calls == len(errors) + 1 and p.stats.retries == len(errors) and p.stats.splits == 0
    assert store.recovered == len(errors)  # a reconnect is tried after each


async def test_backoff_grows_and_is_capped():
    b = Backoff(initial=0.1, factor=2, cap=1.0, jitter=0)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5, 10)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert all(0.08 <= Backoff(initial=0.1, jitter=0.2).delay(1) <= 0.12 for _ in range(50))


class FlakyDlq(CollectedDeadLetters):
    """A dead-letter topic that times out twice, then takes the records."""

    fails = 2

    async def send(self, rejected, consumer):
        if self.fails:
            self.fails -= 1
            raise kafka_errors.KafkaTimeoutError()
        await super().send(rejected, consumer)


async def test_a_dead_letter_failure_is_retried_not_blamed_on_a_record():
    store = Store()

    dlq = FlakyDlq()
    p, _ = processor(store, Handler(store), dlq=dlq)
    log = [ev("call.ringing"), b"garbage", ev("call.answered")]
    await run(p, msgs(*log))
    assert len(store.applied) == 2 and [r.offset for r in dlq.sorted()] == [1] and p.stats.retries == 2


async def test_the_handler_can_dead_letter_a_record_it_still_handles():
    store = Store()

    async def handler(batch):
        for r in batch.records:
            store.write(r.env.id)
            if r.env.type == "PlaceCall":
                batch.reject(r, DecodeError("invalid_payload", "PlaceCall rejected: to: not a number", "PlaceCall"))

    p = Processor("unit", [Source(TOPIC, unchecked=frozenset({"PlaceCall"}))], handler, store, CollectedDeadLetters())
    log = [ev("PlaceCall", {"to": "x"}), ev("call.ringing")]
    await run(p, msgs(*log))
    assert store.applied == [e["id"] for e in log]
    assert [(r.offset, r.error.code) for r in p.dead_letters.sorted()] == [(0, "invalid_payload")]


async def test_what_the_handler_awaits_before_the_commit_is_the_records_too():
    store = Store()

    async def handler(batch):
        for r in batch.records:
            store.write(r.env.id)
        bad = [r for r in batch.records if r.env.data.get("huge")]

        async def publish():
            if bad:
                raise kafka_errors.MessageSizeTooLargeError()

        batch.before_commit(asyncio.ensure_future(publish()))

    p, dlq = processor(store, handler)
    log = [ev("call.ringing"), ev("call.answered", {"huge": True}), ev("call.completed")]
    await run(p, msgs(*log))
    assert store.applied == [log[0]["id"], log[2]["id"]]
    assert [(r.offset, r.error.code) for r in dlq.sorted()] == [(1, "handler_error")]


async def test_records_below_the_stored_positions_are_dropped_in_the_transaction():
    store = Store()
    store.offsets = {(TOPIC, 0): 2}  # another member already stored these (a rebalance)
    p, dlq = processor(store, Handler(store))
    log = [ev("call.ringing"), b"garbage", ev("call.answered"), b"garbage again"]
    await run(p, msgs(*log))
    assert store.applied == [log[2]["id"]] and [r.offset for r in dlq.sorted()] == [3]
    assert store.offsets == {(TOPIC, 0): 4}


async def test_positions_loaded_on_assignment_drop_a_redelivery():
    store = Store()
    p, _ = processor(store, Handler(store))
    log = [ev("call.ringing"), ev("call.answered"), ev("call.completed")]
    await run(p, msgs(*log))
    store.fail_load = 1  # Postgres away for a moment when the partitions are assigned again
    assert await p.load() == {(TOPIC, 0): 3}
    assert p.prepare(msgs(*log)) == []  # a fetch buffered before the seek: nothing twice
    assert await run(p, msgs(*log)) == {} and len(store.applied) == 3


async def test_stopping_while_waiting_to_retry_leaves_the_batch_uncommitted():
    store = Store()
    stopping = asyncio.Event()
    handler = Handler(store, transient=[ConnectionRefusedError()] * 100)
    p = Processor("unit", [Source(TOPIC)], handler, store, CollectedDeadLetters(), stopping=stopping,
                  backoff=Backoff(initial=0.05, cap=0.05))
    task = asyncio.create_task(run(p, msgs(ev("call.ringing"))))
    await asyncio.sleep(0.12)
    stopping.set()
    with pytest.raises(Stopped):
        await task
    assert store.applied == [] and store.offsets == {}  # the next owner redoes it


async def test_kafka_dead_letters_carry_reason_consumer_and_source_position():
    sent = []

    class Producer:
        async def send(self, topic, value, key=None):
            sent.append((topic, key, orjson.loads(value)))
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut

    item = Source(TOPIC).item(Msg(TOPIC, 1, 42, raw(POISON["occurred_at yesterday"])))
    await KafkaDeadLetters(Producer(), topic="t.voice.dlq").send([item], "projector")
    [(topic, key, rec)] = sent
    assert topic == "t.voice.dlq" and key == f"{TOPIC}:1:42".encode()
    assert rec["code"] == "invalid_envelope" and "occurred_at" in rec["reason"] and rec["consumer"] == "projector"
    assert rec["source"] == {"topic": TOPIC, "partition": 1, "offset": 42} and rec["type"] == "call.ringing"
    assert orjson.loads(rec["raw_text"])["occurred_at"] == "yesterday" and rec["raw_truncated"] is False


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["ok", "ok", "ok", "nul", "bug", "garbage"]), min_size=1, max_size=40),
       st.integers(min_value=1, max_value=17))
def test_splitting_gives_what_one_by_one_gives(kinds, batch_size):
    """Whatever the batch boundaries (the live projector's and a replay's differ), the records
    applied and dead-lettered are those of applying the log one record at a time."""
    def make(kind, i):
        if kind == "garbage":
            return b"garbage"
        return ev("dtmf.received", {"digit": "1", **({kind: True} if kind != "ok" else {})})

    log = msgs(*[make(k, i) for i, k in enumerate(kinds)])

    async def go(size):
        store = Store()
        p, dlq = processor(store, Handler(store))
        for i in range(0, len(log), size):
            await run(p, log[i:i + size])
        return store.applied, [r.offset for r in dlq.sorted()], store.offsets

    batched = asyncio.run(go(batch_size))
    one_by_one = asyncio.run(go(1))
    assert batched == one_by_one
    assert batched[1] == [i for i, k in enumerate(kinds) if k != "ok"]


# --- the media workers share the checks and the DLQ ----------------------------------------

async def test_event_worker_dead_letters_bad_records_and_handler_failures():
    from services.common.event_worker import EventWorker

    calls = []

    async def handler(env):
        calls.append(env.data.get("text"))
        if env.data.get("text") == "boom":
            raise RuntimeError("renderer bug")
        if env.data.get("text") == "flaky" and calls.count("flaky") < 3:
            raise ConnectionResetError("media store")  # transient: retried, not dead-lettered
        return [env.caused("tts.rendered", {"audio_ref": "sha256:1.wav", "duration_ms": 1})]

    handler.types = frozenset({"tts.requested"})
    w = EventWorker("tts", handler, topic=TOPIC, group_id="g")
    w.backoff = Backoff(initial=0.001, cap=0.001)
    dlq = CollectedDeadLetters()
    w.dead_letters = dlq
    out = []

    class Producer:  # sends are queued at once; the acks are awaited together
        async def send(self, topic, value, key=None, headers=None):
            t = _decode_env(value).type
            assert headers == [("type", t.encode())]  # consumers skip by it without decoding
            out.append(t)
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(None)
            return fut

    w.producer = Producer()
    await w._partition(msgs(ev("tts.requested", {"text": "hi"}), ev("tts.requested", {}),  # no text
                            ev("call.ringing"), b"garbage", ev("tts.requested", {"text": "boom"}),
                            ev("tts.requested", {"text": "flaky"})))
    assert out == ["tts.rendered", "tts.rendered"]
    assert [(r.offset, r.error.code) for r in dlq.sorted()] == [(1, "invalid_payload"), (3, "malformed_json"),
                                                                (4, "handler_error")]
    assert calls == ["hi", "boom", "flaky", "flaky", "flaky"] and w.rejected == 3


async def test_without_a_rollback_a_handled_batch_is_not_handled_again_when_its_dlq_send_is_retried():
    from services.common.consumer import KafkaTracking

    handled = []

    async def handler(batch):
        handled.extend(r.env.id for r in batch.records)  # an effect nothing rolls back (the gateway's)

    p = Processor("unit", [Source(TOPIC)], handler, KafkaTracking(), FlakyDlq(),
                  backoff=Backoff(initial=0.001, cap=0.001))
    log = [ev("play.requested", {"audio_ref": "sha256:1.wav"}), b"garbage"]
    assert await run(p, msgs(*log)) == {(TOPIC, 0): 2}
    assert handled == [log[0]["id"]] and [r.offset for r in p.dead_letters.sorted()] == [1]
    assert p.stats.retries == 2



def test_a_type_header_lets_a_consumer_skip_undecoded_and_a_false_one_is_rejected():
    from types import SimpleNamespace

    from events import encode, new_envelope
    from services.common.consumer import Record, Rejected, Skipped, Source

    src = Source("voice.call.events", types=frozenset({"call.answered"}))
    env = new_envelope("call.answered", "call_1", "acct_1", {"answered_by": None})
    m = lambda value, headers: SimpleNamespace(topic="t", partition=0, offset=1, value=value, headers=headers,  # noqa: E731
                                               timestamp=0)
    # another type, by the header alone: not even decoded (the bytes are not JSON)
    assert type(src.item(m(b"\x00not json", [("type", b"tts.rendered")]))) is Skipped
    assert type(src.item(m(encode(env), [("type", b"call.answered")]))) is Record
    assert type(src.item(m(encode(env), []))) is Record  # records from before the header: decoded
    lie = src.item(m(encode(env), [("type", b"call.ringing")]))
    assert type(lie) is Skipped  # names a type it does not take: left to those that do
    forged = Source("voice.call.events", types=frozenset({"call.answered", "call.ringing"}))
    bad = forged.item(m(encode(env), [("type", b"call.ringing")]))
    assert type(bad) is Rejected and bad.error.code == "invalid_envelope"
    # a command topic dead-letters unknown commands whatever the header says
    cmds = Source("voice.call.commands", types=frozenset({"PlaceCall"}), reject_others=True)
    assert type(cmds.item(m(encode(env), [("type", b"PlaceCall")]))) is Rejected
