"""Whole calls on the real stack through the sandbox carrier: each outcome, timers, hangups."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.e2e


async def test_default_number_hears_the_script_and_completes(voice, kprod):
    cid = await voice.place(kprod, record=True)
    end = await voice.wait(cid, "terminal", timeout=60)
    assert end.type == "call.completed"
    assert voice.types(cid)[:3] == ["call.queued", "tts.requested", "dial.requested"]
    seq = [t for t in voice.types(cid) if t in ("call.ringing", "call.answered", "play.requested",
                                                  "prompt.finished", "hangup.requested", "call.completed")]
    assert seq == ["call.ringing", "call.answered", "play.requested", "prompt.finished", "hangup.requested",
                   "call.completed"]
    assert "recording.captured" in voice.types(cid)

    async def projected():
        return await voice.db.fetchrow(f"SELECT * FROM {voice.schema}.calls WHERE id = $1", cid)
    deadline = asyncio.get_running_loop().time() + 60
    while (row := await projected()) is None or row["status"] != "completed":
        assert asyncio.get_running_loop().time() < deadline, f"not projected as completed within 60 s: {row}"
        await asyncio.sleep(0.1)
    assert row["answered_at"] is not None and row["duration"] >= 0


@pytest.mark.parametrize("number, final, sip", [
    ("+15005550001", "call.busy", 486),
    ("+15005550003", "call.failed", 503),
    ("+15005550004", "call.completed", None),
])
async def test_magic_numbers(voice, kprod, number, final, sip):
    cid = await voice.place(kprod, to=number)
    end = await voice.wait(cid, "terminal", timeout=30)
    assert end.type == final
    assert end.data.get("sip_code") == sip
    if number == "+15005550004":
        assert "call.answered" in voice.types(cid) and end.data["hangup_by"] == "callee"
        assert "prompt.finished" not in voice.types(cid) or \
            next(e for e in voice.events[cid] if e.type == "prompt.finished").data["interrupted"]


async def test_no_answer_after_ring_timeout(voice, kprod):
    cid = await voice.place(kprod, to="+15005550002", timeout=2)
    ringing = await voice.wait(cid, "call.ringing", timeout=20)
    end = await voice.wait(cid, "terminal", timeout=20)
    assert end.type == "call.no-answer"
    from datetime import datetime
    waited = (datetime.fromisoformat(end.occurred_at) - datetime.fromisoformat(ringing.occurred_at)).total_seconds()
    # Not before the requested 2 s; the upper bound only tells the carrier's own ring timer
    # from the orchestrator's safety net (timeout + 10 s, which would end it as canceled)
    # and from the 30 s default.
    assert 1.5 <= waited < 10, waited


async def test_hangup_during_ringing_cancels(voice, kprod):
    cid = await voice.place(kprod, to="+15005550002", timeout=30)
    await voice.wait(cid, "call.ringing", timeout=20)
    await voice.hangup(kprod, cid)
    end = await voice.wait(cid, "terminal", timeout=20)
    assert end.type == "call.canceled" and end.data["hangup_by"] == "caller"


async def test_hangup_during_prompt_completes(voice, kprod):
    long_text = " ".join(["This is a long announcement that keeps going."] * 12)
    cid = await voice.place(kprod, tts={"text": long_text})
    await voice.wait(cid, "play.requested", timeout=60)
    await voice.hangup(kprod, cid)
    end = await voice.wait(cid, "terminal", timeout=20)
    assert end.type == "call.completed" and end.data["hangup_by"] == "caller"
    assert "prompt.finished" in voice.types(cid)  # playback stopped, not left running
    # and stopped at once, not played to its end before the hangup
    assert next(e for e in voice.events[cid] if e.type == "prompt.finished").data["interrupted"] is True


async def test_scripted_callee_presses_digits_for_gather(voice, kprod):
    await voice.db.execute(
        "INSERT INTO sandbox_callees (number, account_id, script) VALUES ($1, $2, $3::jsonb)",
        "+15557770001", voice.account, '{"ring": 0.5, "after": 1.0, "press": "1234#"}')
    cid = await voice.place(kprod, to="+15557770001", tts={"text": "Enter your PIN."},
                            gather={"type": "dtmf", "num_digits": 4, "finish_on_key": "#", "timeout": 10})
    g = await voice.wait(cid, "gather.completed", timeout=60)
    # The docs' payload: the pound key right after the fourth digit ends the gather and is reported.
    assert (g.data["digits"], g.data["finished_on_key"]) == ("1234", "#")
    assert (await voice.wait(cid, "terminal")).type == "call.completed"
    assert [e.data["digit"] for e in voice.events[cid] if e.type == "dtmf.received"] == list("1234#")


async def test_gather_completes_at_num_digits_when_no_finish_key_follows(voice, kprod):
    await voice.db.execute(
        "INSERT INTO sandbox_callees (number, account_id, script) VALUES ($1, $2, $3::jsonb)",
        "+15557770005", voice.account, '{"ring": 0.5, "after": 1.0, "press": "1234"}')
    cid = await voice.place(kprod, to="+15557770005", tts={"text": "Enter your PIN."},
                            gather={"type": "dtmf", "num_digits": 4, "finish_on_key": "#", "timeout": 10,
                                    "inter_digit_timeout": 2})
    g = await voice.wait(cid, "gather.completed", timeout=60)
    # Completed (not a timeout) with the four digits once the inter-digit wait for "#" ran out.
    assert (g.data["digits"], g.data["finished_on_key"]) == ("1234", None)
    assert "gather.timeout" not in voice.types(cid)
    assert (await voice.wait(cid, "terminal")).type == "call.completed"


async def test_gather_timeout_without_input(voice, kprod):
    cid = await voice.place(kprod, tts={"text": "Press a key."}, gather={"type": "dtmf", "timeout": 1})
    t = await voice.wait(cid, "gather.timeout", timeout=60)
    assert t.data["digits"] == ""
    assert (await voice.wait(cid, "terminal")).type == "call.completed"


async def test_kafka_command_from_unverified_number_is_rejected_and_dead_lettered(voice, kprod):
    cid = await voice.place(kprod, **{"from": "+15550000000"})
    rej = await voice.wait(cid, "call.rejected", timeout=30)
    assert any(e["field"] == "from" for e in rej.data["errors"])
    assert "dial.requested" not in voice.types(cid)


async def test_ivr_flow_main_menu_to_support_submenu(voice, kprod):
    import json
    from pathlib import Path

    flow = json.loads((Path(__file__).resolve().parents[2] / "schemas/flows/examples/main_menu.json").read_text())
    await voice.db.execute(
        "INSERT INTO sandbox_callees (number, account_id, script) VALUES ($1, $2, $3::jsonb)",
        "+15557770002", voice.account, '{"ring": 0.5, "after": 1.0, "press": "21"}')
    cid = await voice.place(kprod, to="+15557770002", tts=None, flow=flow)
    end = await voice.wait(cid, "terminal", timeout=90)
    assert end.type == "call.completed", voice.types(cid)
    path = [e.data["step"] for e in voice.events[cid] if e.type == "flow.step.entered"]
    assert path == ["welcome", "main_menu", "support_menu", "support_internet", "leave_message",
                    "record_message", "goodbye", "end"], path
    assert "recording.captured" in voice.types(cid)  # the record step recorded the call


async def test_invalid_inline_flow_is_rejected(voice, kprod):
    bad = {"start": "a", "steps": {"a": {"kind": "goto", "step": "nowhere"}}}
    cid = await voice.place(kprod, tts=None, flow=bad)
    rej = await voice.wait(cid, "call.rejected", timeout=30)
    assert any(e["field"].startswith("flow.steps.a") for e in rej.data["errors"]), rej.data


SPEECH_LIBS = ("/ctranslate2", "/faster_whisper", "/onnxruntime", "/piper")  # whisper, Piper and their runtimes


def _speech_libs(pid: int) -> set[str]:
    """The speech engines' native libraries mapped into process `pid` (importing them maps them)."""
    with open(f"/proc/{pid}/maps") as f:
        return {lib for line in f for lib in SPEECH_LIBS if lib in line}


async def test_a_spanish_speech_gather_is_heard_in_spanish(voice, kprod):
    """gather.language es-ES: the multilingual model hears a Spanish caller (the English one
    would not), and the hint matches."""
    await voice.db.execute(
        "INSERT INTO sandbox_callees (number, account_id, script) VALUES ($1, $2, $3::jsonb)",
        "+15557770006", voice.account,
        '{"ring": 0.5, "after": 20.0, "say": "Quiero hablar con ventas, por favor.", "say_voice": "es-ES-Neural2-A"}')
    cid = await voice.place(kprod, to="+15557770006", tts={"text": "¿Con qué departamento?", "voice": "es-ES-Neural2-A"},
                            gather={"type": "speech", "timeout": 30, "language": "es-ES",
                                    "hints": ["ventas", "soporte", "facturación"]})
    g = await voice.wait(cid, "gather.completed", timeout=120)
    speech = g.data["speech"]
    assert speech["matched_hint"] == "ventas" and "quiero hablar con venta" in speech["text"].lower(), speech
    heard = next(e for e in voice.events[cid] if e.type == "speech.recognized")
    assert heard.data["language"] == "es"


async def test_speech_gather_transcribes_the_callee_and_matches_a_hint(voice, kprod):
    """The callee's line is rendered by the TTS service, the gateway streams the gather's
    audio, the transcription service recognises it, and the gateway completes the gather;
    the gateway process never loads whisper or Piper."""
    await voice.db.execute(
        "INSERT INTO sandbox_callees (number, account_id, script) VALUES ($1, $2, $3::jsonb)",
        "+15557770003", voice.account, '{"ring": 0.5, "after": 20.0, "say": "I have a question about billing."}')
    # Speech said before the gather opens is not collected: the callee waits 5 s (20 s at
    # speed 4) after answering, far longer than prompt + two Kafka hops take on a loaded
    # machine, and the 30 s first-input timeout is far past when its words start.
    cid = await voice.place(kprod, to="+15557770003", tts={"text": "Which department?"},
                            gather={"type": "speech", "timeout": 30, "hints": ["sales", "support", "billing"]})
    g = await voice.wait(cid, "gather.completed", timeout=90)
    speech = g.data["speech"]
    assert "billing" in speech["text"].lower(), speech
    assert speech["matched_hint"] == "billing"
    assert 0 < speech["confidence"] <= 1
    assert set(speech) == {"text", "confidence", "matched_hint"}  # the public payload, as before
    assert (await voice.wait(cid, "terminal")).type == "call.completed"
    evs = voice.events[cid]
    asked = next(e for e in evs if e.type == "gather.requested")
    (heard,) = [e for e in evs if e.type == "speech.recognized"]
    assert heard.data["gather_id"] == asked.id and heard.causation_id == asked.id and g.causation_id == asked.id
    assert (heard.data["text"], heard.data["confidence"], heard.data["matched_hint"]) == \
        (speech["text"], speech["confidence"], "billing")
    line = next(e for e in evs if e.type == "sandbox.speech.requested")
    assert line.data["text"] == "I have a question about billing."
    rendered = next(e for e in evs if e.type == "sandbox.speech.rendered")
    assert rendered.causation_id == line.id and rendered.data["audio_ref"].startswith("sha256:")
    # From the processes themselves: the gateway has no speech engine mapped; the workers
    # that run them do (so the check does see them).
    assert _speech_libs(voice.procs["services.telephony.gateway"].pid) == set()
    assert "/ctranslate2" in _speech_libs(voice.procs["services.transcription.speech_gather"].pid)


async def test_a_sandbox_callee_line_is_rendered_by_the_tts_service_and_cached(voice, kprod):
    """A new line is rendered by Piper in the TTS service (never in the gateway); the same
    line again is a cache hit (content-addressed, like prompts)."""
    import json
    import random

    said = f"Checking the cache, number {random.randrange(10**6)}."  # new to the cache: Piper must run
    await voice.db.execute(
        "INSERT INTO sandbox_callees (number, account_id, script) VALUES ($1, $2, $3::jsonb)",
        "+15557770004", voice.account, json.dumps({"ring": 0.3, "after": 0.5, "say": said}))
    renders = []
    for _ in range(2):
        cid = await voice.place(kprod, to="+15557770004", tts={"text": "Hello."})
        renders.append((await voice.wait(cid, "sandbox.speech.rendered", timeout=60)).data)
        assert (await voice.wait(cid, "terminal")).type == "call.completed"
    assert renders[0]["audio_ref"] == renders[1]["audio_ref"]
    assert (renders[0]["cache_hit"], renders[1]["cache_hit"]) == (False, True)
    assert renders[0]["duration_ms"] > 1000
    assert "/onnxruntime" in _speech_libs(voice.procs["services.tts.worker"].pid)  # Piper ran there...
    assert _speech_libs(voice.procs["services.telephony.gateway"].pid) == set()  # ...not here


async def test_flow_webhook_step_asks_the_app_what_to_say(voice, kprod):
    """A `webhook` step POSTs (signed) to the app; the steps it answers with are run next."""
    from aiohttp import web

    from services.common import signing

    seen = []

    async def app_handler(request):
        body = await request.read()
        signing.verify("whsec_test", body, request.headers["Canary-Signature"])  # raises if forged
        seen.append(await request.json())
        return web.json_response({"steps": [{"kind": "say", "text": "Your balance is five dollars."}]})

    app = web.Application()
    app.router.add_post("/ivr/billing", app_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        flow = {"start": "ask", "steps": {
            "ask": {"kind": "webhook", "url": f"http://127.0.0.1:{port}/ivr/billing", "next": "bye"},
            "bye": {"kind": "hangup"}}}
        cid = await voice.place(kprod, tts=None, flow=flow)
        end = await voice.wait(cid, "terminal", timeout=60)
        assert end.type == "call.completed", voice.types(cid)
        path = [e.data["step"] for e in voice.events[cid] if e.type == "flow.step.entered"]
        assert path == ["ask", "ask.0", "bye"], path
        assert seen and seen[0]["call_id"] == cid and seen[0]["step"] == "ask"
        said = [e.data["text"] for e in voice.events[cid] if e.type == "tts.requested"]
        assert said == ["Your balance is five dollars."]
    finally:
        await runner.cleanup()


async def test_calls_over_the_account_rate_wait_in_queued_and_are_paced(voice, kprod):
    from datetime import datetime

    acct = voice.account + "_slow"
    await voice.db.execute("INSERT INTO accounts (id, name, signing_secret, calls_per_second)"
                           " VALUES ($1, $1, 's', 2)", acct)
    await voice.db.execute("INSERT INTO numbers (account_id, number) VALUES ($1, '+15559876543')", acct)
    try:
        calls = [await voice.place(kprod, account=acct, to="+15005550004") for _ in range(5)]
        dials = sorted([datetime.fromisoformat((await voice.wait(c, "dial.requested", timeout=60)).occurred_at)
                        for c in calls])
        span = (dials[-1] - dials[0]).total_seconds()
        assert span >= 1.5, f"5 calls at 2 calls/s were dialled within {span:.2f} s"  # none rejected, all paced
        assert sum("timer.fired" in voice.types(c) for c in calls) >= 3  # they waited for their slot
        for c in calls:
            assert (await voice.wait(c, "terminal", timeout=60)).type == "call.completed"
    finally:
        await voice.db.execute("DELETE FROM accounts WHERE id = $1", acct)
