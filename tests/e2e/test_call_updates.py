"""Changing live sandbox calls on the whole stack (UpdateCall on voice.call.commands).

One call per kind of update: play now (interrupting, and queued), redirect to an inline and
to a stored flow (from a named step), send digits (what the sandbox callee decoded from the
tones), recording pause/resume/stop (the bytes of the file: the paused span is silence),
hang up by status, and the per-call time limit. Each checks the events on the topic and the
rows the projector wrote in Postgres.
"""

from __future__ import annotations

import asyncio
import os

import numpy as np
import orjson
import pytest

from events import new_envelope
from services.common import audio
from services.common.kafka import publish
from services.common.media_store import LocalMediaStore
from tests.conftest import ROOT
from tests.e2e.conftest import CORE, _voice_stack

pytestmark = pytest.mark.e2e

MODULES = CORE + ["services.recording.worker"]
LONG = ("This is a long announcement from Canary, read slowly so that it is still playing while the test "
        "changes the call. It goes on about the weather, the traffic and the opening hours of the office, "
        "and then it says the same things once more, in case you missed them the first time.")
WAIT_GATHER = {"type": "dtmf", "num_digits": 4, "timeout": 30}  # holds the call open while it is changed


@pytest.fixture(scope="module")
async def uvoice(request, stack, tmp_path_factory):
    async for vs in _voice_stack(request, stack, tmp_path_factory, MODULES, speed=4.0):
        yield vs


async def update(v, producer, call_id: str, **data) -> str:
    env = new_envelope("UpdateCall", call_id, v.account, data)
    await publish(producer, v.prefix + "voice.call.commands", env)
    return env.id


def after(v, call_id: str, type: str, event_id: str) -> list[str]:
    """The types of the call's events after the event `event_id`."""
    types = v.types(call_id)
    ids = [e.id for e in v.events[call_id]]
    return types[ids.index(event_id) + 1:] if event_id in ids else []


async def projected(v, call_id: str, timeout: float = 30.0) -> dict:
    """The call's row once the projector has its final status."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        row = await v.db.fetchrow(f"SELECT * FROM {v.schema}.calls WHERE id = $1", call_id)
        if row is not None and row["status"] in ("completed", "failed", "canceled", "busy", "no-answer"):
            return dict(row)
        assert asyncio.get_running_loop().time() < deadline, f"{call_id} not projected final: {row}"
        await asyncio.sleep(0.1)


async def stored_events(v, call_id: str, type: str, at_least: int = 1, timeout: float = 30.0) -> list[dict]:
    """The payloads of the call's events of `type` in the projection (once there are `at_least`)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await v.db.fetch(f"SELECT data FROM {v.schema}.call_events WHERE call_id = $1 AND type = $2"
                                " ORDER BY kafka_offset", call_id, type)
        if len(rows) >= at_least or asyncio.get_running_loop().time() > deadline:
            return [r["data"] if isinstance(r["data"], dict) else orjson.loads(r["data"]) for r in rows]
        await asyncio.sleep(0.1)


async def test_play_now_interrupts_the_gather_and_the_call_ends_after_it(uvoice, kprod):
    v = uvoice
    cid = await v.place(kprod, tts={"text": "Enter your PIN."}, gather=WAIT_GATHER)
    await v.wait(cid, "gather.requested", timeout=60)
    uid = await update(v, kprod, cid, tts={"text": "Sorry, we have to end this call now."})
    end = await v.wait(cid, "terminal", timeout=60)
    assert end.type == "call.completed", v.types(cid)
    upd = await v.wait(cid, "call.updated")
    assert upd.data["update_id"] == uid and upd.data["changes"] == ["tts"] and upd.data["interrupt"] is True
    tag = "update:" + uid
    seq = after(v, cid, "call.updated", upd.id)
    assert seq[:2] == ["interrupt.requested", "tts.requested"], seq
    plays = [e for e in v.events[cid] if e.type == "play.requested" and e.data.get("step") == tag]
    finished = [e for e in v.events[cid] if e.type == "prompt.finished" and e.data.get("step") == tag]
    assert len(plays) == 1 and len(finished) == 1 and finished[0].data["interrupted"] is False
    hang = next(e for e in v.events[cid] if e.type == "hangup.requested")
    assert hang.data["reason"] == "script finished"
    # The interrupted gather never reports (nobody waits for it): the call ended before its timeout.
    assert not {"gather.completed", "gather.timeout"} & set(v.types(cid)), v.types(cid)
    row = await projected(v, cid)
    assert row["status"] == "completed"
    assert [d["update_id"] for d in await stored_events(v, cid, "call.updated")] == [uid]


async def test_play_queued_after_the_prompt_holds_the_scripts_hangup(uvoice, kprod):
    v = uvoice
    cid = await v.place(kprod, tts={"text": LONG})
    await v.wait(cid, "play.requested", timeout=60)
    uid = await update(v, kprod, cid, tts={"text": "One more thing: thank you."}, interrupt=False)
    end = await v.wait(cid, "terminal", timeout=60)
    assert end.type == "call.completed", v.types(cid)
    tag = "update:" + uid
    evs = v.events[cid]
    prompt_end = next(i for i, e in enumerate(evs) if e.type == "prompt.finished" and not e.data.get("step"))
    update_end = next(i for i, e in enumerate(evs) if e.type == "prompt.finished" and e.data.get("step") == tag)
    hangup = next(i for i, e in enumerate(evs) if e.type == "hangup.requested")
    assert evs[prompt_end].data["interrupted"] is False  # the prompt played to its end ...
    assert prompt_end < update_end < hangup, v.types(cid)  # ... then the queued audio, then the hangup
    assert evs[update_end].data["interrupted"] is False
    assert "interrupt.requested" not in v.types(cid)


async def test_redirect_to_an_inline_flow(uvoice, kprod):
    v = uvoice
    cid = await v.place(kprod, tts={"text": "Enter your PIN."}, gather=WAIT_GATHER)
    await v.wait(cid, "gather.requested", timeout=60)
    flow = {"start": "moved", "steps": {"moved": {"kind": "say", "text": "Your call was moved.", "next": "end"},
                                        "end": {"kind": "hangup"}}}
    await update(v, kprod, cid, flow=flow)
    end = await v.wait(cid, "terminal", timeout=60)
    assert end.type == "call.completed", v.types(cid)
    assert [e.data["step"] for e in v.events[cid] if e.type == "flow.step.entered"] == ["moved", "end"]
    assert not {"gather.completed", "gather.timeout"} & set(v.types(cid))
    assert (await projected(v, cid))["status"] == "completed"


async def test_redirect_to_a_named_step_of_a_stored_flow(uvoice, kprod):
    from services.lib.flows import store as flows

    v = uvoice
    doc = {"start": "intro", "steps": {"intro": {"kind": "say", "text": "Not heard.", "next": "later"},
                                       "later": {"kind": "say", "text": "Straight to the point.", "next": "end"},
                                       "end": {"kind": "hangup"}}}
    saved = await flows.create(v.db, v.account, doc)
    cid = await v.place(kprod, tts={"text": "Enter your PIN."}, gather=WAIT_GATHER)
    await v.wait(cid, "gather.requested", timeout=60)
    await update(v, kprod, cid, flow_id=saved["id"], step="later")
    end = await v.wait(cid, "terminal", timeout=60)
    assert end.type == "call.completed", v.types(cid)
    assert [e.data["step"] for e in v.events[cid] if e.type == "flow.step.entered"] == ["later", "end"]
    upd = await v.wait(cid, "call.updated")
    assert upd.data["flow_id"] == saved["id"] and upd.data["flow_version"] == 1 and upd.data["step"] == "later"


async def test_send_digits_reach_the_sandbox_callee(uvoice, kprod):
    v = uvoice
    cid = await v.place(kprod, tts={"text": "Connecting."}, gather=WAIT_GATHER, record=True)
    await v.wait(cid, "gather.requested", timeout=60)
    await update(v, kprod, cid, send_digits="1234#")
    sent = await v.wait(cid, "dtmf.sent", timeout=30)
    assert sent.data == {"digits": "1234#", "method": "inband"}
    heard = await v.wait(cid, "sandbox.dtmf.heard", timeout=30)
    assert heard.data == {"digits": "1234#"}  # decoded by the callee from the tones in our audio
    uid = await update(v, kprod, cid, send_digits="9w9")  # `w`: a pause between two sends of 9
    for _ in range(300):  # the second send: two tones half a second apart
        if len([e for e in v.events[cid] if e.type == "dtmf.sent"]) == 2:
            break
        await asyncio.sleep(0.1)
    assert uid in [e.data["update_id"] for e in v.events[cid] if e.type == "call.updated"]
    assert [e.data["digits"] for e in v.events[cid] if e.type == "sandbox.dtmf.heard"] == ["1234#", "9", "9"]
    # The gather still runs: sending digits changes nothing else.
    assert "interrupt.requested" not in v.types(cid)
    await update(v, kprod, cid, status="completed")
    assert (await v.wait(cid, "terminal", timeout=30)).type == "call.completed"
    assert [d["digits"] for d in await stored_events(v, cid, "dtmf.sent", 2)] == ["1234#", "9w9"]


async def test_recording_pause_is_silence_in_the_file_and_stop_stores_it_before_the_end(uvoice, kprod):
    v = uvoice
    cid = await v.place(kprod, tts={"text": LONG}, record=True, recording_channels="dual")
    await v.wait(cid, "play.requested", timeout=60)
    await asyncio.sleep(0.5)  # 2 s of the prompt at speed 4
    await update(v, kprod, cid, recording="pause")
    paused = await v.wait(cid, "recording.paused", timeout=30)
    await asyncio.sleep(0.5)
    await update(v, kprod, cid, recording="resume")
    resumed = await v.wait(cid, "recording.resumed", timeout=30)
    await asyncio.sleep(0.3)
    await update(v, kprod, cid, recording="stop")
    captured = await v.wait(cid, "recording.captured", timeout=30)
    assert not any(e.type.startswith("call.") and e.type in ("call.completed",) for e in v.events[cid]), \
        "stop stores the recording while the call goes on"
    await update(v, kprod, cid, status="completed")
    end = await v.wait(cid, "terminal", timeout=30)
    assert end.type == "call.completed"
    types = v.types(cid)
    assert types.index("recording.captured") < types.index("call.completed")
    assert types.count("recording.captured") == 1  # the end stores nothing more

    spans = captured.data["paused_spans"]
    assert spans == [{"start_ms": paused.data["offset_ms"], "end_ms": resumed.data["offset_ms"]}]
    start, stop = spans[0]["start_ms"], spans[0]["end_ms"]
    assert stop - start >= 1000, spans  # 0.5 s wall at speed 4
    rec = await v.wait(cid, "recording.completed", timeout=60)
    assert rec.data["paused_spans"] == spans
    store = LocalMediaStore(os.environ.get("CANARY_MEDIA_DIR") or ROOT / ".local" / "media")
    left, right = audio.load_channels(store.get(rec.data["wav_ref"]))  # left = callee, right = us
    callee, ours = audio.pcm_to_array(left), audio.pcm_to_array(right)
    a, b = start * 8, stop * 8  # samples at 8 kHz
    assert not np.any(ours[a:b]) and not np.any(callee[a:b]), "the paused span is digital silence"
    assert np.any(ours[max(0, a - 4000):a]) and np.any(ours[b:b + 4000]), "the prompt plays around it"
    assert len(ours) >= b
    rows = await stored_events(v, cid, "recording.completed")
    assert rows and rows[0]["paused_spans"] == spans  # the row GET /recording reads its spans from


async def test_status_completed_hangs_up(uvoice, kprod):
    v = uvoice
    cid = await v.place(kprod, tts={"text": "Enter your PIN."}, gather=WAIT_GATHER)
    await v.wait(cid, "gather.requested", timeout=60)
    await update(v, kprod, cid, status="completed")
    end = await v.wait(cid, "terminal", timeout=30)
    assert end.type == "call.completed" and end.data["hangup_by"] == "caller"
    assert next(e for e in v.events[cid] if e.type == "hangup.requested").data["reason"] == "api"


async def test_an_update_after_the_end_changes_nothing(uvoice, kprod):
    v = uvoice
    cid = await v.place(kprod, to="+15005550004")  # answers and hangs up at once
    await v.wait(cid, "terminal", timeout=60)
    # Commands and events are two topics: wait until the orchestrator has decided the end
    # (the API's 409 call_not_live covers the window before, from the projection).
    for _ in range(300):
        if await v.db.fetchval("SELECT state->>'phase' FROM orch_calls WHERE call_id = $1", cid) == "ended":
            break
        await asyncio.sleep(0.1)
    await update(v, kprod, cid, send_digits="1")
    await asyncio.sleep(2)
    assert "call.updated" not in v.types(cid) and "dtmf.send.requested" not in v.types(cid)


async def test_time_limit_ends_the_call_completed_with_its_reason(uvoice, kprod):
    v = uvoice
    cid = await v.place(kprod, tts={"text": "Enter your PIN."}, gather=WAIT_GATHER, time_limit=2)
    answered = await v.wait(cid, "call.answered", timeout=60)
    end = await v.wait(cid, "terminal", timeout=30)
    assert end.type == "call.completed" and end.data["reason"] == "time_limit", end.data
    from datetime import datetime

    took = (datetime.fromisoformat(end.occurred_at) - datetime.fromisoformat(answered.occurred_at)).total_seconds()
    assert 2 <= took < 15, took  # the timer fires within its poll; the hangup is one more round trip
    row = await projected(v, cid)
    assert row["status"] == "completed" and row["end_reason"] == "time_limit"


async def test_how_fast_an_interrupt_takes_effect(uvoice, kprod, capsys):
    """From the UpdateCall on the topic to the prompt stopped (prompt.finished interrupted) and to
    the update's audio sent to the gateway (play.requested, after its render): printed, bounded."""
    from datetime import datetime, timezone

    v = uvoice
    stops, plays = [], []
    for n in range(3):
        cid = await v.place(kprod, tts={"text": LONG})
        await v.wait(cid, "play.requested", timeout=60)
        await asyncio.sleep(0.3)
        sent = datetime.now(timezone.utc)
        uid = await update(v, kprod, cid, tts={"text": f"Stop number {n}."})
        await v.wait(cid, "terminal", timeout=60)
        stop = next(e for e in v.events[cid] if e.type == "prompt.finished" and not e.data.get("step"))
        play = next(e for e in v.events[cid] if e.type == "play.requested" and e.data.get("step") == "update:" + uid)
        assert stop.data["interrupted"] is True
        stops.append((datetime.fromisoformat(stop.occurred_at) - sent).total_seconds() * 1000)
        plays.append((datetime.fromisoformat(play.occurred_at) - sent).total_seconds() * 1000)
    with capsys.disabled():
        print(f"\ninterrupt: prompt stopped {sorted(round(x) for x in stops)} ms, update audio sent "
              f"{sorted(round(x) for x in plays)} ms after the UpdateCall")
    assert max(stops) < 3000 and max(plays) < 10000
