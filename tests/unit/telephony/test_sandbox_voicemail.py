"""Sandbox scripted callees as voicemails and as people, for answering machine detection."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.common.audio import silence
from services.lib import trunks
from services.lib.trunks import TrunkError
from services.telephony.amd import FRAME_SAMPLES, MachineDetector
from services.telephony.carrier import Answered, DialRequest
from services.telephony.sandbox import BEEP_GAP_MS, BEEP_MS, CalleeScript, FrameClock, SandboxSession

GREETING_MS = 3000


def test_a_voicemail_script_is_stored_with_its_greeting_and_beep():
    s = trunks.callee_script(voicemail="Hi, leave a message.", beep=True, after="500ms")
    assert s["voicemail"] == "Hi, leave a message." and s["beep"] is True and s["say"] == ""
    assert CalleeScript.from_dict(s) == CalleeScript(after=0.5, voicemail="Hi, leave a message.", beep=True)
    assert "voicemail" not in trunks.callee_script(say="Hello?")  # a person's script: the layout of before


@pytest.mark.parametrize("kw,code,field", [
    ({"voicemail": "x" * 1001}, "invalid_voicemail", "voicemail"),  # too long
    ({"voicemail": "bell\x07"}, "invalid_voicemail", "voicemail"),  # control characters
    ({"voicemail": 42}, "invalid_voicemail", "voicemail"),  # not text
    ({"voicemail": "Leave a message.", "say": "Hello?"}, "invalid_voicemail", "voicemail"),  # both: which one?
    ({"beep": True}, "invalid_beep", "beep"),  # a beep with no greeting
    ({"voicemail": "Leave a message.", "beep": "yes"}, "invalid_beep", "beep"),  # not a boolean
])
def test_bad_voicemail_scripts_are_refused_with_code_and_field(kw, code, field):
    with pytest.raises(TrunkError) as e:
        trunks.callee_script(**kw)
    assert (e.value.code, e.value.field) == (code, field)


def _speech(ms: int) -> bytes:
    rng = np.random.default_rng(5)
    n = ms * 8
    x = rng.standard_normal(n) * 0.2 * np.abs(np.sin(np.arange(n) / 8000 * np.pi * 4))
    return (x * 32767).astype("<i2").tobytes()


async def _hear(script: CalleeScript, seconds: float) -> bytes:
    """What the gateway hears of a sandbox callee (at speed 10) for `seconds` of call time."""
    heard: list[bytes] = []

    async def speak(req, text, voice):
        return _speech(GREETING_MS) if text.startswith("Hi") else _speech(500)

    clock = FrameClock(10.0)
    s = SandboxSession(DialRequest("call_v", "+15557770001", "+15559876543"), script, 10.0, speak, clock)
    s.on_audio(heard.append)
    try:
        while not isinstance(await asyncio.wait_for(s.events.get(), 5), Answered):
            pass
        while len(heard) * 0.02 < seconds:
            await asyncio.sleep(0.01)
    finally:
        s.close()
    return b"".join(heard)


async def test_a_voicemail_callee_plays_its_greeting_then_beeps_and_detection_finds_the_beep():
    pcm = await _hear(CalleeScript(ring=0.1, voicemail="Hi, leave a message.", beep=True), 6.0)
    det = MachineDetector(mode="detect_message_end")
    res = None
    for i in range(0, len(pcm), FRAME_SAMPLES * 2):
        res = det.feed(pcm[i:i + FRAME_SAMPLES * 2]) or res
    assert res is not None and res.answered_by == "machine_end_beep"
    # the beep starts BEEP_GAP_MS after the greeting and is found within 300 ms of its start
    first = next(i for i in range(0, len(pcm), 320) if pcm[i:i + 320] != silence(20)) // 320 * 20
    beep_start = first + GREETING_MS + BEEP_GAP_MS
    assert 0 < res.beep_ms - beep_start <= 300 and res.decision_ms >= beep_start + BEEP_MS - 40


async def test_a_person_callee_says_hello_and_is_taken_for_a_person():
    pcm = await _hear(CalleeScript(ring=0.1, after=0.3, say="Hello?"), 4.0)
    det = MachineDetector()
    res = None
    for i in range(0, len(pcm), FRAME_SAMPLES * 2):
        res = det.feed(pcm[i:i + FRAME_SAMPLES * 2]) or res
    assert res is not None and res.answered_by == "human"
