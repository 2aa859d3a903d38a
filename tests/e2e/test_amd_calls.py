"""Answering machine detection on whole sandbox calls: voicemail and human callees.

The callees are scripted sandbox numbers whose lines our TTS service renders (a
voicemail's greeting then a beep; a person's "Hello?"). Checked for real: the
`machine_detection.completed` event on voice.call.events, the projected call row the
API serves, the signed webhook body an app receives, and, on the dual-channel
recording, that the prompt starts after the beep.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from services.lib import trunks

pytestmark = pytest.mark.e2e

VOICEMAIL = "+15557772001"
PERSON = "+15557772002"
GREETING = "Hi, you have reached Dana. I can't take your call right now. Please leave a message after the tone."
PROMPT = "This is Canary with a reminder about your appointment tomorrow at ten."


@pytest.fixture(scope="module")
async def callees(voice):
    for number, script in ((VOICEMAIL, trunks.callee_script(ring=0.5, after=0.3, voicemail=GREETING, beep=True)),
                           (PERSON, trunks.callee_script(ring=2.0, after=0.4, say="Hello?"))):
        await trunks.set_callee(voice.db, number, voice.account, script)


@pytest.fixture
async def app():
    """A webhook receiver: every POST's path, body and whether its signature verifies."""
    from aiohttp import web

    from services.common import signing

    got: list[tuple[str, dict, bool]] = []

    async def handler(request):
        body = await request.read()
        got.append((request.path, await request.json(),
                    signing.is_valid("whsec_test", body, request.headers.get("Canary-Signature", ""))))
        return web.json_response({})

    application = web.Application()
    application.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(application)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    app = type("App", (), {"url": f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", "got": got})
    yield app
    await runner.cleanup()


async def _row(voice, cid: str, until) -> dict:
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        row = await voice.db.fetchrow(f"SELECT * FROM {voice.schema}.calls WHERE id = $1", cid)
        if row is not None and until(row):
            return dict(row)
        assert asyncio.get_running_loop().time() < deadline, f"{cid} not projected as expected: {row}"
        await asyncio.sleep(0.1)


async def _webhooks(app, path: str, type: str, n: int = 1, timeout: float = 60) -> list[dict]:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(found := [b for p, b, _ in app.got if p == path and b.get("type") == type]) < n:
        assert asyncio.get_running_loop().time() < deadline, f"no {type} webhook at {path}: {app.got}"
        await asyncio.sleep(0.1)
    return found


def _channels(captured) -> tuple[np.ndarray, np.ndarray]:
    from services.common import audio
    from services.common.media_store import get_media_store

    store = get_media_store()
    callee = audio.pcm_to_array(audio.wav_to_pcm8k(store.get(captured.data["callee_ref"])))
    ours = audio.pcm_to_array(audio.wav_to_pcm8k(store.get(captured.data["agent_ref"])))
    return callee, ours


def _beep_end_ms(callee: np.ndarray) -> int:
    """The end of the last held 1 kHz tone in the callee's channel (ms from answer)."""
    from services.telephony.amd import frame_features

    tonal = [frame_features(callee[i:i + 160].astype("<i2").tobytes())
             for i in range(0, len(callee) - 160, 160)]
    beep = [i for i, (level, t, f) in enumerate(tonal) if t > 0.8 and abs(f - 1000) < 30 and level > -40]
    assert beep, "no beep in the callee's channel"
    return (beep[-1] + 1) * 20


def _first_sound_ms(x: np.ndarray) -> int:
    loud = np.flatnonzero(np.abs(x) > 300)
    assert len(loud), "silent channel"
    return int(loud[0] / 8)


async def test_voicemail_detect_message_end_plays_the_prompt_after_the_beep(voice, kprod, callees, app):
    cid = await voice.place(kprod, to=VOICEMAIL, tts={"text": PROMPT}, machine_detection="detect_message_end",
                            webhook_url=f"{app.url}/status", amd_webhook_url=f"{app.url}/amd",
                            record=True, recording_channels="dual")
    res = await voice.wait(cid, "machine_detection.completed", timeout=90)
    assert res.data["answered_by"] == "machine_end_beep" and res.data["mode"] == "detect_message_end"
    assert res.data["beep_ms"] is not None and res.data["decision_ms"] >= res.data["beep_ms"]
    answered = await voice.wait(cid, "call.answered")
    assert answered.data.get("answered_by") is None  # not known at answer
    assert (await voice.wait(cid, "terminal", timeout=90)).type == "call.completed"
    types = voice.types(cid)
    # Synchronous detection: the prompt was asked for only once the result was in.
    assert types.index("machine_detection.completed") < types.index("play.requested"), types

    # The recording: our prompt starts after the voicemail's beep ended, so the whole message is left.
    callee, ours = _channels(await voice.wait(cid, "recording.captured"))
    beep_end, prompt_start = _beep_end_ms(callee), _first_sound_ms(ours)
    assert beep_end <= prompt_start, (beep_end, prompt_start)
    assert res.data["beep_ms"] <= beep_end  # found while it sounded

    # The public call, and the webhook the app got (signed; to amd_webhook_url, not webhook_url).
    row = await _row(voice, cid, lambda r: r["status"] == "completed")
    assert row["answered_by"] == "machine_end_beep"
    options = row["options"] if isinstance(row["options"], dict) else json.loads(row["options"])
    assert options["machine_detection"] == "detect_message_end"
    [body] = await _webhooks(app, "/amd", "machine_detection.completed")
    assert body == {"call_id": cid, "type": "machine_detection.completed", "answered_by": "machine_end_beep",
                    "mode": "detect_message_end", "decision_ms": res.data["decision_ms"],
                    "beep_ms": res.data["beep_ms"], "event_id": res.id, "occurred_at": res.occurred_at}
    assert all(ok for p, _, ok in app.got if p == "/amd")
    await _webhooks(app, "/status", "call.completed")
    assert not [b for p, b, _ in app.got if p == "/status" and b["type"] == "machine_detection.completed"]


async def test_a_person_is_detected_as_human_quickly_and_hears_the_prompt(voice, kprod, callees, app):
    cid = await voice.place(kprod, to=PERSON, tts={"text": PROMPT}, machine_detection="enable",
                            webhook_url=f"{app.url}/status")
    res = await voice.wait(cid, "machine_detection.completed", timeout=90)
    assert res.data["answered_by"] == "human" and res.data["mode"] == "enable"
    assert res.data["decision_ms"] <= 3000 and res.data.get("beep_ms") is None
    assert (await voice.wait(cid, "terminal", timeout=90)).type == "call.completed"
    types = voice.types(cid)
    assert types.index("machine_detection.completed") < types.index("play.requested")
    row = await _row(voice, cid, lambda r: r["status"] == "completed")
    assert row["answered_by"] == "human"
    [body] = await _webhooks(app, "/status", "machine_detection.completed")  # no amd_webhook_url: webhook_url
    assert body["answered_by"] == "human" and body["event_id"] == res.id
    assert all(ok for _, _, ok in app.got)


async def test_an_async_flow_branches_on_answered_by(voice, kprod, callees):
    flow = {"start": "who", "steps": {
        "who": {"kind": "answered_by", "branches": {"human": "hello", "machine": "message"}, "default": "hello"},
        "hello": {"kind": "say", "text": "Hello! Press 1 to confirm."},
        "message": {"kind": "say", "text": "Please call us back at your convenience."}}}
    cid = await voice.place(kprod, to=VOICEMAIL, tts=None, flow=flow, machine_detection="detect_message_end",
                            async_amd=True)
    assert (await voice.wait(cid, "terminal", timeout=90)).type == "call.completed"
    path = [e.data["step"] for e in voice.events[cid] if e.type == "flow.step.entered"]
    assert path == ["who", "message"], voice.types(cid)
    types = voice.types(cid)
    # Asynchronous: the flow had entered its first step before the result came.
    first_step = next(i for i, e in enumerate(voice.events[cid]) if e.type == "flow.step.entered")
    assert first_step < types.index("machine_detection.completed")


async def test_without_machine_detection_answered_by_is_null(voice, kprod, callees):
    cid = await voice.place(kprod, to=PERSON, tts={"text": "Hi."})
    answered = await voice.wait(cid, "call.answered", timeout=60)
    assert answered.data == {"answered_by": None}
    assert (await voice.wait(cid, "terminal", timeout=90)).type == "call.completed"
    assert "machine_detection.completed" not in voice.types(cid)
    row = await _row(voice, cid, lambda r: r["status"] == "completed")
    assert row["answered_by"] is None


async def test_a_bad_option_from_a_kafka_producer_is_rejected_with_code_and_field(voice, kprod):
    cid = await voice.place(kprod, machine_detection="sometimes")
    rejected = await voice.wait(cid, "call.rejected", timeout=60)
    assert [(e["code"], e["field"]) for e in rejected.data["errors"]] == [("invalid_field", "machine_detection")]
    assert "dial.requested" not in voice.types(cid)
