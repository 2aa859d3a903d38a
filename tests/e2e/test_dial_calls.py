"""A flow's dial step on the real stack (sandbox carrier): a second call with its own id and
timeline, linked to its parent, the two connected through the gateway, and the outcome branch."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.common import audio
from services.common.media_store import LocalMediaStore
from tests.e2e.conftest import CORE, _voice_stack

pytestmark = pytest.mark.e2e

AGENT = "+15557770020"  # answers, says its line, hangs up
AGENT_LINE = "Hello, this is the support desk. Your order has shipped today."


def flow(to: str, timeout: int = 10) -> dict:
    return {"start": "hello", "steps": {
        "hello": {"kind": "say", "text": "Connecting you now.", "next": "agent"},
        "agent": {"kind": "dial", "to": to, "timeout": timeout, "record": True,
                  "branches": {"busy": "busy", "no-answer": "nobody", "failed": "broken"}, "next": "after"},
        "after": {"kind": "say", "text": "The other party hung up. Goodbye."},
        "busy": {"kind": "say", "text": "The line is busy."},
        "nobody": {"kind": "say", "text": "Nobody answered."},
        "broken": {"kind": "say", "text": "That call failed."}}}


@pytest.fixture(scope="module")
async def voice(request, stack, tmp_path_factory):
    async for vs in _voice_stack(request, stack, tmp_path_factory, CORE):
        await vs.db.execute(
            "INSERT INTO sandbox_callees (number, account_id, script) VALUES ($1, $2, $3::jsonb)", AGENT, vs.account,
            f'{{"ring": 1.0, "after": 0.5, "say": "{AGENT_LINE}", "hangup_after": 12}}')
        yield vs


def steps(vs, call_id: str) -> list[str]:
    return [e.data["step"] for e in vs.events[call_id] if e.type == "flow.step.entered"]


async def projected(vs, call_id: str, status: str) -> dict:
    """The call as GET /v1/voice/calls/{id} answers it (the API's query and row shaping, on this
    stack's projection schema), once projected with `status`."""
    from services.api import store

    sql = store.GET_CALL.replace(f"{store.P}.", f"{vs.schema}.")
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        row = await vs.db.fetchrow(sql, vs.account, call_id)
        if row is not None and row["status"] == status:
            return store.call_from_row(row)
        assert asyncio.get_running_loop().time() < deadline, f"{call_id} not projected as {status}: {row}"
        await asyncio.sleep(0.2)


async def test_dial_connects_a_second_call_and_relays_its_audio(voice, kprod):
    parent = await voice.place(kprod, tts=None, flow=flow(AGENT))
    started = await voice.wait(parent, "dial.started", timeout=60)
    child = started.data["child_call_id"]
    assert child != parent and started.data["to"] == AGENT and started.data["from"] == "+15559876543"
    ended = await voice.wait(parent, "dial.ended", timeout=60)
    assert ended.data["outcome"] == "completed" and ended.data["child_call_id"] == child
    assert (await voice.wait(parent, "terminal", timeout=60)).type == "call.completed"
    assert (await voice.wait(child, "terminal", timeout=30)).type == "call.completed"

    # Two timelines: the parent's dial, the child's own life as a call.
    p = [t for t in voice.types(parent) if t in ("dial.started", "dial.answered", "dial.ended", "record.requested",
                                                 "call.completed")]
    assert p == ["dial.started", "dial.answered", "record.requested", "dial.ended", "call.completed"], p
    assert steps(voice, parent) == ["hello", "agent", "after"]
    c = [t for t in voice.types(child) if t.startswith("call.") or t == "dial.requested"]
    assert c == ["call.leg.requested", "call.queued", "dial.requested", "call.ringing", "call.answered",
                 "call.completed"], c
    queued = next(e for e in voice.events[child] if e.type == "call.queued")
    assert queued.data["direction"] == "outbound-dial" and queued.data["parent_call_id"] == parent
    assert next(e for e in voice.events[child] if e.type == "call.completed").data["hangup_by"] == "callee"

    # The link, as the API shows both calls.
    got = await projected(voice, child, "completed")
    assert (got["direction"], got["parent_call_id"], got["to"]) == ("outbound-dial", parent, AGENT)
    got = await projected(voice, parent, "completed")
    assert (got["direction"], got["parent_call_id"]) == ("outbound", None)

    # Audio really went through: the parent's dual-channel recording has the second party's
    # words, exactly as the second party said them, on the right channel.
    captured = await voice.wait(parent, "recording.captured", timeout=30)
    assert captured.data["channels"] == "dual"
    rendered = await voice.wait(child, "sandbox.speech.rendered", timeout=30)
    store = LocalMediaStore()
    line = audio.wav_to_pcm8k(store.get(rendered.data["audio_ref"]))  # as the gateway loaded it
    right, rate, _ = audio.read_wav(store.get(captured.data["agent_ref"]))  # the recording's samples as stored
    left = audio.pcm_to_array(audio.read_wav(store.get(captured.data["callee_ref"]))[0])
    assert rate == 8000
    frames = [line[i:i + 320] for i in range(0, len(line) - 320, 320)]
    loud = [f for f in frames if np.abs(audio.pcm_to_array(f)).mean() > 200]
    assert len(loud) > 50, "the second party's line has speech"
    heard = sum(1 for f in loud if f in right)
    assert heard == len(loud), f"{heard} of {len(loud)} frames of the second party's speech relayed"
    assert np.abs(left).mean() < 50  # the first party said nothing: its channel is quiet


@pytest.mark.parametrize("to, outcome, step", [
    ("+15005550001", "busy", "busy"),
    ("+15005550002", "no-answer", "nobody"),
    ("+15005550003", "failed", "broken"),
])
async def test_the_outcome_picks_the_branch(voice, kprod, to, outcome, step):
    parent = await voice.place(kprod, tts=None, flow=flow(to, timeout=3))
    ended = await voice.wait(parent, "dial.ended", timeout=60)
    child = ended.data["child_call_id"]
    assert ended.data["outcome"] == outcome
    assert (await voice.wait(parent, "terminal", timeout=60)).type == "call.completed"
    assert steps(voice, parent) == ["hello", "agent", step]
    assert "dial.answered" not in voice.types(parent)
    end = await voice.wait(child, "terminal", timeout=30)
    assert end.type == f"call.{outcome}"
    assert "call.answered" not in voice.types(child)


async def test_hold_and_unhold_a_connected_call(voice, kprod):
    """UpdateCall hold on the first party while connected: call.held (bridged), then unhold:
    call.unheld (bridged); the call goes on and ends as usual."""
    from events import new_envelope
    from services.common.kafka import publish

    parent = await voice.place(kprod, tts=None, flow=flow(AGENT, timeout=10))
    await voice.wait(parent, "dial.answered", timeout=60)
    for hold in (True, False):
        await publish(kprod, voice.prefix + "voice.call.commands",
                      new_envelope("UpdateCall", parent, voice.account, {"hold": hold}))
        ev = await voice.wait(parent, "call.held" if hold else "call.unheld", timeout=30)
        assert ev.data == {"bridged": True}
    updated = [e.data for e in voice.events[parent] if e.type == "call.updated"]
    assert [u["hold"] for u in updated] == [True, False] and all(u["skipped"] == [] for u in updated)
    assert (await voice.wait(parent, "terminal", timeout=60)).type == "call.completed"


async def second_party_heard(voice, parent: str, child: str) -> tuple[int, int]:
    """(frames heard, loud frames) of the second party's scripted line on the right channel of the
    parent's dual recording (what we sent the first party), compared sample for sample."""
    captured = await voice.wait(parent, "recording.captured", timeout=30)
    rendered = await voice.wait(child, "sandbox.speech.rendered", timeout=30)
    store = LocalMediaStore()
    line = audio.wav_to_pcm8k(store.get(rendered.data["audio_ref"]))
    right = audio.read_wav(store.get(captured.data["agent_ref"]))[0]
    loud = [f for f in (line[i:i + 320] for i in range(0, len(line) - 320, 320))
            if np.abs(audio.pcm_to_array(f)).mean() > 200]
    return sum(1 for f in loud if f in right), len(loud)


def transfer_flow(to: str) -> dict:
    return {"start": "hello", "steps": {
        "hello": {"kind": "say", "text": "Transferring you now.", "next": "agent"},
        "agent": {"kind": "transfer", "to": to, "on_failed": "sorry"},
        "sorry": {"kind": "say", "text": "Nobody could take your call."}}}


async def test_a_sandbox_transfer_bridges_the_caller_to_the_target(voice, kprod):
    """The sandbox has no far end to call the target on a REFER: the target is dialled as a second
    call and bridged. The outcome is reported as a REFER's, the call ends once the target hangs up,
    and the target's words reach the transferee (the right channel of the call's recording)."""
    parent = await voice.place(kprod, tts=None, flow=transfer_flow(f"tel:{AGENT}"), record=True,
                               recording_channels="dual")
    started = await voice.wait(parent, "transfer.started", timeout=60)
    child = started.data["child_call_id"]
    assert child != parent and started.data["to"] == f"tel:{AGENT}" and started.data["refer_to"] is None
    done = await voice.wait(parent, "transfer.completed", timeout=60)
    assert (done.data["code"], done.data["reason"]) == (200, "OK")
    assert (await voice.wait(child, "terminal", timeout=60)).type == "call.completed"
    end = await voice.wait(parent, "terminal", timeout=60)
    assert end.type == "call.completed"
    p = [t for t in voice.types(parent) if t.startswith("transfer.") or t in ("dial.answered", "dial.ended",
                                                                               "hangup.requested", "call.completed")]
    assert p == ["transfer.started", "dial.answered", "transfer.completed", "dial.ended", "hangup.requested",
                 "call.completed"], p
    assert next(e for e in voice.events[parent] if e.type == "hangup.requested").data["reason"] == "transfer"
    assert steps(voice, parent) == ["hello", "agent"]  # the flow is over once transferred
    queued = next(e for e in voice.events[child] if e.type == "call.queued")
    assert (queued.data["direction"], queued.data["parent_call_id"], queued.data["to"]) == (
        "outbound-dial", parent, AGENT)
    got = await projected(voice, child, "completed")
    assert (got["direction"], got["parent_call_id"]) == ("outbound-dial", parent)

    heard, loud = await second_party_heard(voice, parent, child)
    assert loud > 50 and heard == loud, f"{heard} of {loud} frames of the target's speech bridged to the transferee"


async def test_a_sandbox_transfer_to_a_busy_target_fails_and_the_flow_goes_on(voice, kprod):
    parent = await voice.place(kprod, tts=None, flow=transfer_flow("+15005550001"))
    failed = await voice.wait(parent, "transfer.failed", timeout=60)
    assert (failed.data["to"], failed.data["code"]) == ("+15005550001", 486)
    child = next(e for e in voice.events[parent] if e.type == "transfer.started").data["child_call_id"]
    assert (await voice.wait(child, "terminal", timeout=30)).type == "call.busy"
    assert (await voice.wait(parent, "terminal", timeout=60)).type == "call.completed"
    assert steps(voice, parent) == ["hello", "agent", "sorry"]
    assert "transfer.completed" not in voice.types(parent)


async def test_the_dial_call_option_greets_then_connects(voice, kprod):
    """Click-to-call: PlaceCall `dial` (no flow) greets the first party, connects it to the second
    and hangs up when the second party's call ends."""
    parent = await voice.place(kprod, tts={"text": "Connecting you to the desk."},
                               dial={"to": AGENT, "timeout": 10, "record": True})
    started = await voice.wait(parent, "dial.started", timeout=60)
    child = started.data["child_call_id"]
    assert (started.data["to"], started.data["record"]) == (AGENT, True)
    ended = await voice.wait(parent, "dial.ended", timeout=60)
    assert ended.data["outcome"] == "completed"
    assert (await voice.wait(parent, "terminal", timeout=60)).type == "call.completed"
    assert steps(voice, parent) == ["greeting", "dial"]
    assert (await projected(voice, child, "completed"))["parent_call_id"] == parent
    heard, loud = await second_party_heard(voice, parent, child)
    assert loud > 50 and heard == loud, f"{heard} of {loud} frames of the second party's speech relayed"
