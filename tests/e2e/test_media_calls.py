"""A recorded, transcribed sandbox call on the whole stack, media services included.

One call, in real time (sandbox speed 1, so "live" means live): our prompt plays, then
a scripted callee says a sentence while we wait for digits, then the gather times out
and we hang up. Checked: the dual-channel recording keeps each party in its own
channel, the post-call transcript has the callee's words, and real-time partials with
those words arrived while the call was still up.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from datetime import datetime

import numpy as np
import pytest

from services.common import audio
from services.common.media_store import LocalMediaStore
from tests.conftest import ROOT
from tests.e2e.conftest import CORE, _voice_stack

pytestmark = pytest.mark.e2e

MODULES = CORE + ["services.recording.worker", "services.transcription.worker", "services.transcription.live"]
CALLEE = "+15557771001"
PROMPT = "Thank you for calling Canary. Please tell us how we can help you today."
SAID = "I would like to check the balance of my savings account."
WORDS = {"balance", "savings", "account"}
AFTER_S = 6.5  # the callee speaks this long after answering (after our prompt)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def _t(env) -> datetime:
    return datetime.fromisoformat(env.occurred_at.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
async def media_voice(request, stack, tmp_path_factory):
    async for vs in _voice_stack(request, stack, tmp_path_factory, MODULES, speed=1.0):
        yield vs


@pytest.fixture(scope="module")
async def spoken_call(media_voice, kprod):
    """Place the call and wait for everything it produces; returns its id."""
    v = media_voice
    await v.db.execute(
        "INSERT INTO sandbox_callees (number, account_id, script) VALUES ($1, $2, $3::jsonb)"
        " ON CONFLICT (number, account_id) DO UPDATE SET script = EXCLUDED.script",
        CALLEE, v.account, json.dumps({"ring": 0.5, "after": AFTER_S, "say": SAID}))
    cid = await v.place(kprod, to=CALLEE, tts={"text": PROMPT, "voice": "en-US-Neural2-F"},
                        record=True, recording_channels="dual", transcribe=True,
                        gather={"type": "dtmf", "timeout": 10})
    end = await v.wait(cid, "terminal", timeout=90)
    assert end.type == "call.completed", v.types(cid)
    await v.wait(cid, "transcription.completed", timeout=120)
    return cid


def _dbfs(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    rms = float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
    return -120.0 if rms == 0 else 20 * np.log10(rms / 32768)


async def test_dual_recording_keeps_each_party_in_its_channel_and_transcript_has_the_callee(
        media_voice, spoken_call):
    v, cid = media_voice, spoken_call
    rec = await v.wait(cid, "recording.completed")
    assert rec.data["channels"] == "dual"
    prompt_ms = next(e for e in v.events[cid] if e.type == "tts.rendered").data["duration_ms"]
    assert prompt_ms < AFTER_S * 1000 - 500, "the prompt must end before the callee speaks"

    store = LocalMediaStore(os.environ.get("CANARY_MEDIA_DIR") or ROOT / ".local" / "media")
    pcm, rate, channels = audio.read_wav(store.get(rec.data["wav_ref"]))
    assert (rate, channels) == (8000, 2)
    left, right = audio.load_channels(store.get(rec.data["wav_ref"]))  # left = callee, right = us
    callee, agent = audio.pcm_to_array(left), audio.pcm_to_array(right)
    assert rec.data["duration_ms"] >= (AFTER_S + 2) * 1000

    def window(x, a_s, b_s):
        return x[int(a_s * 8000):int(b_s * 8000)]

    def onset_s(x):
        loud = [i for i in range(0, len(x) - 160, 160) if _dbfs(x[i:i + 160]) > -40]
        return loud[0] / 8000 if loud else None

    # The recording starts at the instant of answer; our prompt a little later (the
    # orchestrator's round trip): from its onset to its end is our voice.
    start = onset_s(agent)
    assert start is not None, "our channel is silent"
    ours = (start + 0.1, start + prompt_ms / 1000 - 0.3)
    # The callee starts speaking AFTER_S after answer (plus the time the sandbox takes
    # to render its sentence): find the onset, then take 1.5 s of the sentence.
    onset = onset_s(callee)
    assert onset is not None, "the callee's channel is silent"
    assert AFTER_S - 0.1 <= onset <= AFTER_S + 3, onset
    theirs = (onset + 0.1, onset + 1.6)
    levels = {
        "prompt: agent": _dbfs(window(agent, *ours)), "prompt: callee": _dbfs(window(callee, *ours)),
        "speech: agent": _dbfs(window(agent, *theirs)), "speech: callee": _dbfs(window(callee, *theirs)),
    }
    assert levels["prompt: agent"] > -35 and levels["speech: callee"] > -35, levels
    assert levels["prompt: agent"] - levels["prompt: callee"] > 30, levels
    assert levels["speech: callee"] - levels["speech: agent"] > 30, levels

    t = next(e for e in v.events[cid] if e.type == "transcription.completed")
    assert len(WORDS & _words(t.data["text"])) >= 2, t.data
    said_by_callee = " ".join(s["text"] for s in t.data["segments"] if s.get("speaker") == "callee")
    assert len(WORDS & _words(said_by_callee)) >= 2, t.data["segments"]
    said_by_us = " ".join(s["text"] for s in t.data["segments"] if s.get("speaker") == "agent")
    assert {"canary", "help"} & _words(said_by_us), t.data["segments"]


async def test_partials_arrive_while_the_call_is_live(media_voice, spoken_call):
    v, cid = media_voice, spoken_call
    evs = v.events[cid]
    end_at = next(i for i, e in enumerate(evs) if e.type == "call.completed")
    during = [e for e in evs[:end_at] if e.type == "transcription.partial" and not e.data["final"]]
    assert during, f"no interim partial before the call ended: {v.types(cid)}"
    # the utterance's final may land after the hang-up on a slow machine: wait for it
    deadline = asyncio.get_running_loop().time() + 60
    while not any(e.type == "transcription.partial" and e.data["final"] for e in v.events[cid]):
        assert asyncio.get_running_loop().time() < deadline, f"no final partial: {v.types(cid)}"
        await asyncio.sleep(0.2)
    live = [e for e in v.events[cid] if e.type == "transcription.partial"]
    heard = set().union(*(_words(e.data["text"]) for e in live))
    assert len(WORDS & heard) >= 2, [e.data for e in live]
    assert all(e.data["channel"] == "callee" and e.account_id == v.account for e in live)
    finals = [e for e in live if e.data["final"]]
    partials = [e for e in live if not e.data["final"]]
    assert finals and partials, [e.data for e in live]
    # The guarantee (whatever the machine's speed): each utterance's first partial comes
    # before its final, and covers less audio than the final.
    for utt in {e.data["utterance"] for e in finals}:
        mine = [e for e in live if e.data["utterance"] == utt]
        assert not mine[0].data["final"] and mine[-1].data["final"], [e.data for e in mine]
        assert mine[0].data["duration_ms"] < mine[-1].data["duration_ms"], [e.data for e in mine]
    first = partials[0]
    # offset_ms counts from the start of the stream (= answer); the callee starts AFTER_S in
    assert AFTER_S * 1000 - 500 <= first.data["offset_ms"] <= AFTER_S * 1000 + 1500, first.data
    # How soon after speech start it came is a figure of the machine: bench/live.py.
    answered = next(e for e in evs if e.type == "call.answered")
    speech_start_s = (_t(answered) - _t(evs[0])).total_seconds() + first.data["offset_ms"] / 1000
    latency = (_t(first) - _t(evs[0])).total_seconds() - speech_start_s
    print(f"first partial {latency:.2f}s after speech start: {first.data}")
    assert len({e.id for e in live}) == len(live)
