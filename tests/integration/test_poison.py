"""Poison messages on the real log: each is dead-lettered once per consumer, with its reason
and source position, between the valid events of a real call, and no consumer restarts.

The projector and the orchestrator run as real processes (no supervisor: a crash would
end the process), and `canary-voice replay --dry-run` rebuilds the same tables as the
live projector, reporting the same records as skipped.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import subprocess
import sys
import uuid
from datetime import datetime

import orjson
import pytest

from events import Envelope, derive_id, new_envelope
from services.common.kafka import make_consumer, publish
from tests.conftest import ROOT, service_env, spawn
from tests.integration.test_projector import call_events, wait_for

pytestmark = pytest.mark.integration

ACCOUNT = "acct_poison"
NUMBER = "+15559876543"


def poison(call_id: str, account: str = ACCOUNT) -> list[tuple[str, bytes, str, str]]:
    """(name, bytes, expected DLQ code, a word of the expected reason) of every poison message."""
    def env(type_, data, **kw):
        e = new_envelope(type_, call_id, account, data).to_dict()
        e.update(kw)
        return orjson.dumps(e)

    return [
        ("id not a UUID", env("call.ringing", {"early_media": False}, id="evt-not-a-uuid"),
         "invalid_envelope", "id must be a UUID"),
        ("causation_id not a UUID", env("call.answered", {"answered_by": "machine"}, causation_id="not-a-uuid"),
         "invalid_envelope", "causation_id must be a UUID"),
        ("occurred_at yesterday", env("call.ringing", {"early_media": False}, occurred_at="yesterday"),
         "invalid_envelope", "occurred_at"),
        ("tts.rendered with \\u0000 (reaches jsonb)", env("tts.rendered", {"audio_ref": "sha256:\u0000.wav",
                                                                           "duration_ms": 900}),
         "data_error", "22P05"),
        ("tts.rendered without audio_ref", env("tts.rendered", {"duration_ms": 900}), "invalid_payload", "audio_ref"),
        ("audio.fetched without audio_ref", env("audio.fetched", {"duration_ms": 900}),
         "invalid_payload", "audio_ref"),
        ("garbage bytes", b"\x00\xff{garbage", "malformed_json", "not JSON"),
        ("recording.completed without recording_id",
         env("recording.completed", {"wav_ref": "sha256:1.wav", "duration_ms": 1000}),
         "invalid_payload", "recording_id"),
    ]


async def send(producer, topic: str, call_id: str, value: bytes) -> tuple[int, int]:
    md = await producer.send_and_wait(topic, value, key=call_id.encode())
    return md.partition, md.offset


async def read_dlq(topic: str, want: int, consumer_name: str, timeout: float = 60.0) -> list[dict]:
    """Every record on the DLQ topic, until `want` of them are `consumer_name`'s (then a little more)."""
    c = make_consumer(topic, group_id=None)
    await c.start()
    recs: list[dict] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while sum(r["consumer"] == consumer_name for r in recs) < want:
            if loop.time() > deadline:
                raise AssertionError(f"{len(recs)} DLQ records: {[(r['consumer'], r['code']) for r in recs]}")
            for ms in (await c.getmany(timeout_ms=300)).values():
                recs.extend(orjson.loads(m.value) for m in ms)
        for ms in (await c.getmany(timeout_ms=1000)).values():  # a duplicate would show now
            recs.extend(orjson.loads(m.value) for m in ms)
    finally:
        await c.stop()
    return [r for r in recs if r["consumer"] == consumer_name]


def check_dlq(records: list[dict], sent: dict[tuple[int, int], tuple], topic: str) -> None:
    """One DLQ record per poison message sent, with its reason and source position."""
    by_pos = {}
    for r in records:
        pos = (r["source"]["partition"], r["source"]["offset"])
        assert pos not in by_pos, f"dead-lettered twice: {r}"
        by_pos[pos] = r
    assert set(by_pos) == set(sent), (sorted(by_pos), sorted(sent))
    for pos, (name, raw, code, word) in sent.items():
        r = by_pos[pos]
        assert r["source"]["topic"] == topic, name
        assert r["code"] == code, (name, r["code"], r["reason"])
        assert word in r["reason"], (name, r["reason"])
        assert base64.b64decode(r["raw_base64"]) == raw, name


def started_once(log_path, line: str) -> bool:
    return log_path.read_text().count(line) == 1


def cli(env, *args):
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)


def real_call(call_id: str) -> list[Envelope]:
    """A whole call as the services log it: queued, rang, answered, prompt, recording, transcript, ended."""
    t = lambda s: f"2026-01-01T00:00:{s:02d}Z"  # noqa: E731
    q = new_envelope("call.queued", call_id, ACCOUNT, {"to": "+15551234567", "from": NUMBER, "record": True,
                                                      "created_at": t(0), "carrier": "sandbox"}, occurred_at=t(0))
    ev = lambda type_, data, s: q.caused(type_, data, occurred_at=t(s), step=f"{type_}#{s}")  # noqa: E731
    return [q,
            ev("call.ringing", {"early_media": False}, 1),
            ev("call.answered", {"answered_by": "human"}, 3),
            ev("tts.rendered", {"audio_ref": "sha256:ab12.wav", "duration_ms": 900}, 4),
            ev("prompt.finished", {"interrupted": False}, 5),
            ev("gather.completed", {"digits": "42", "finished_on_key": "#"}, 8),
            ev("recording.captured", {"callee_ref": "sha256:1.raw", "agent_ref": "sha256:2.raw"}, 9),
            ev("call.completed", {"reason": "callee hung up", "hangup_by": "callee", "duration": 6}, 9),
            ev("recording.completed", {"recording_id": "rec_poison1", "wav_ref": "sha256:3.wav",
                                       "duration_ms": 6000, "size_bytes": 96000, "sha256": "ab" * 32}, 10)]


async def test_projector_and_replay_skip_each_poison_message_once(prefix, pg, producer, tmp_path):
    schema = "p_" + uuid.uuid4().hex[:10]
    topic = prefix + "voice.call.events"
    call_id = "call_" + uuid.uuid4().hex[:12]
    good = real_call(call_id)
    others = call_events(n_calls=20, per_call=5)  # other calls, both partitions: batches to split
    bad = poison(call_id)
    # The log: the call's valid events with the poison messages between them, then others.
    sent: dict[tuple[int, int], tuple] = {}
    for i, g in enumerate(good):
        await publish(producer, topic, g)
        if i < len(bad):
            sent[await send(producer, topic, call_id, bad[i][1])] = bad[i]
    for o in others:
        await publish(producer, topic, o)
    total = len(good) + len(bad) + len(others)

    env = service_env(prefix, CANARY_PROJECTION_SCHEMA=schema)
    log = tmp_path / "projector.log"
    proc = spawn("services.projector.service", env, log)
    try:
        async def caught_up():
            try:
                return await pg.fetchval(f"SELECT coalesce(sum(next_offset), 0) FROM {schema}.offsets") == total
            except Exception:
                return False
        await wait_for(caught_up, timeout=90)
        row = await pg.fetchrow(f"SELECT * FROM {schema}.calls WHERE id = $1", call_id)
        assert row["status"] == "completed" and row["answered_by"] == "human"
        assert row["to_number"] == "+15551234567" and row["recording_id"] == "rec_poison1"
        assert row["ringing_at"] == datetime.fromisoformat("2026-01-01T00:00:01Z")
        assert row["answered_at"] == datetime.fromisoformat("2026-01-01T00:00:03Z")
        assert row["duration"] == 6 and row["gather"]["digits"] == "42"
        assert row["events_count"] == len(good) and str(row["last_event_id"]) == good[-1].id
        assert await pg.fetchval(f"SELECT count(*) FROM {schema}.call_events") == len(good) + len(others)
        assert await pg.fetchval(f"SELECT count(*) FROM {schema}.calls WHERE status = 'completed'") == 21
        assert await pg.fetchval(f"SELECT count(*) FROM {schema}.recordings") == 1

        check_dlq(await read_dlq(prefix + "voice.dlq", len(bad), "projector"), sent, topic)
        assert proc.poll() is None, log.read_text()[-3000:]  # never crashed
        assert started_once(log, '"projector started"'), log.read_text()[-3000:]  # never restarted
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    try:
        dry = cli(env, "replay", "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "MISMATCH" not in dry.stdout and dry.stdout.count(" match") == 6, dry.stdout
        assert "dry run" in dry.stdout and f"skipped {len(bad)} records" in dry.stdout, dry.stdout
        for (partition, offset), (name, _, code, _) in sent.items():
            assert f"{topic}:{partition}:{offset} {code}:" in dry.stdout, (name, dry.stdout)
    finally:
        await pg.execute(f"DROP SCHEMA {schema} CASCADE")


async def test_orchestrator_dead_letters_its_poison_inputs_and_the_call_goes_on(prefix, pg, producer, tmp_path):
    account = "acct_" + uuid.uuid4().hex[:10]
    await pg.execute("INSERT INTO accounts (id, name, signing_secret) VALUES ($1, $1, 'whsec_test')", account)
    await pg.execute("INSERT INTO numbers (account_id, number) VALUES ($1, $2)", account, NUMBER)
    events_topic, commands = prefix + "voice.call.events", prefix + "voice.call.commands"
    call_id = "call_" + uuid.uuid4().hex[:12]
    log = tmp_path / "orchestrator.log"
    proc = spawn("services.orchestrator.service", service_env(prefix), log)
    seen: list[Envelope] = []
    ours: set[str] = set()  # ids the test produced (the rest are the orchestrator's outputs)
    follower = make_consumer(events_topic, group_id=None)
    await follower.start()

    async def follow():
        while True:
            for ms in (await follower.getmany(timeout_ms=100)).values():
                for m in ms:
                    e = orjson.loads(m.value) if m.value and m.value[:1] == b"{" else None
                    if e and e.get("call_id") == call_id and e.get("id") not in ours:
                        seen.append(Envelope(**{k: e[k] for k in ("type", "call_id", "account_id", "data",
                                                                   "version", "id", "occurred_at",
                                                                   "causation_id", "correlation_id")}))

    task = asyncio.create_task(follow())

    async def output(type_: str, timeout: float = 60.0) -> Envelope:
        async def found():
            return next((e for e in seen if e.type == type_), None)
        return await wait_for(found, timeout=timeout)

    async def emit(env: Envelope) -> None:
        ours.add(env.id)
        await publish(producer, events_topic, env)

    try:
        place = new_envelope("PlaceCall", call_id, account, {"to": "+15551234567", "from": NUMBER,
                                                              "tts": {"text": "Hello"}, "carrier": "sandbox"})
        await publish(producer, commands, place)
        dial = await output("dial.requested", timeout=90)
        rendered = await output("tts.requested")
        sent: dict[tuple[int, int], tuple] = {}
        bad = poison(call_id, account)
        valid = [dial.caused("call.ringing", {"early_media": False}, step="ring"),
                 rendered.caused("tts.rendered", {"audio_ref": "sha256:good.wav", "duration_ms": 900}),
                 dial.caused("call.answered", {"answered_by": "human"}, step="answer")]
        # Poison first (a \u0000 audio_ref or an early "answered" would be taken if accepted),
        # the valid events between them.
        for i, (name, raw, code, word) in enumerate(bad):
            if raw[:1] == b"{":
                ours.add(orjson.loads(raw)["id"])
            pos = await send(producer, events_topic, call_id, raw)
            if name != "recording.completed without recording_id":  # not an input of the orchestrator
                sent[pos] = bad[i]
            if i in (1, 5, 7):
                await emit(valid[(1, 5, 7).index(i)])
        play = await output("play.requested")
        assert play.data["audio_ref"] == "sha256:good.wav"
        await emit(play.caused("prompt.finished", {"interrupted": False}))
        hangup = await output("hangup.requested")
        assert hangup.data["reason"] == "script finished"
        await emit(hangup.caused("call.completed", {"reason": "hung up", "hangup_by": "system"}))

        async def ended():
            state = await pg.fetchval("SELECT state FROM orch_calls WHERE call_id = $1", call_id)
            return state is not None and state["phase"] == "ended"
        await wait_for(ended)

        check_dlq(await read_dlq(prefix + "voice.dlq", len(sent), "orchestrator"), sent, events_topic)
        # Each output once, and nothing a poison input would have caused.
        assert [e.type for e in seen] == ["call.queued", "tts.requested", "dial.requested", "play.requested",
                                          "hangup.requested"], [e.type for e in seen]
        assert proc.poll() is None, log.read_text()[-3000:]
        assert started_once(log, '"orchestrator started"'), log.read_text()[-3000:]
        assert derive_id(valid[2].id, "play") == play.id  # played because of the real answer
    finally:
        task.cancel()
        await follower.stop()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        await pg.execute("DELETE FROM orch_calls WHERE call_id = $1", call_id)
        await pg.execute("DELETE FROM orch_timers WHERE call_id = $1", call_id)
        await pg.execute("DELETE FROM accounts WHERE id = $1", account)
