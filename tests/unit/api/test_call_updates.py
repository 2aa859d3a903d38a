"""What an update body, status_callback_events and time_limit accept, and what each bad input gets
(the code and field the API's 422 carries); the status webhook filter; the pausable recorder;
the sandbox callee hearing the digits it is sent."""

from __future__ import annotations

import asyncio

import pytest

from services.lib.intake import check_place_call, check_update_call, status_events
from services.webhooks.payloads import Routes

FLOW = {"start": "a", "steps": {"a": {"kind": "say", "text": "Hi."}}}


@pytest.mark.parametrize("body", [
    {"tts": {"text": "Please hold."}},
    {"tts": {"text": "Please hold."}, "interrupt": False},
    {"audio_url": "https://example.com/hold.mp3"},
    {"flow": FLOW}, {"flow": FLOW, "step": "a"}, {"flow_id": "flow_x", "step": "menu"},
    {"send_digits": "1234#"}, {"send_digits": "ww9*ABCD"},
    {"recording": "start"}, {"recording": "pause"}, {"recording": "resume"}, {"recording": "stop"},
    {"status": "completed"},
    {"tts": {"text": "Entering your PIN."}, "send_digits": "1234", "recording": "pause"},
])
def test_valid_updates(body):
    model, errors = check_update_call(body)
    assert errors == [] and model is not None and model.changes()


@pytest.mark.parametrize("body,code,field", [
    ({}, "empty_update", None),  # nothing to change
    ({"interrupt": True, "tts": None}, "invalid_field", "interrupt"),  # interrupt alone changes nothing
    ({"step": "a"}, "invalid_field", "step"),  # a step without a flow
    ({"tsst": {"text": "x"}}, "unknown_field", "tsst"),  # a typo is named, not "empty"
    ("play", "invalid_request", None),  # not a JSON object
    ([{"tts": {"text": "x"}}], "invalid_request", None),
    ({"tts": {"text": "x"}, "audio_url": "https://example.com/a.wav"}, "conflicting_fields", "audio_url"),
    ({"flow": FLOW, "flow_id": "flow_x"}, "conflicting_fields", "flow_id"),
    ({"flow": FLOW, "tts": {"text": "x"}}, "conflicting_fields", "tts"),  # redirect and play exclude each other
    ({"flow_id": "f", "audio_url": "https://example.com/a.wav"}, "conflicting_fields", "audio_url"),
    ({"status": "completed", "send_digits": "1"}, "conflicting_fields", "status"),  # a hangup goes alone
    ({"status": "in-progress"}, "invalid_field", "status"),  # only completed
    ({"status": "canceled"}, "invalid_field", "status"),
    ({"send_digits": ""}, "invalid_field", "send_digits"),
    ({"send_digits": "12x"}, "invalid_field", "send_digits"),
    ({"send_digits": "1" * 33}, "invalid_field", "send_digits"),
    ({"send_digits": 1234}, "invalid_field", "send_digits"),  # strict: not a number
    ({"recording": "paws"}, "invalid_field", "recording"),
    ({"tts": {"text": ""}}, "invalid_field", "tts.text"),
    ({"tts": {"text": "x", "voice": "nope"}}, "invalid_voice", "tts.voice"),
    ({"tts": {"text": "x"}, "interrupt": "yes"}, "invalid_field", "interrupt"),
    ({"audio_url": "http://127.0.0.1/a.wav"}, "invalid_url", "audio_url"),  # the SSRF guard of create
    ({"audio_url": "http://169.254.169.254/latest"}, "invalid_url", "audio_url"),
    ({"audio_url": "file:///etc/passwd"}, "invalid_url", "audio_url"),
    ({"flow": {"start": "a", "steps": {}}}, None, None),  # a broken flow: the flow validator's code
    ({"flow": FLOW, "step": "b"}, "invalid_step", "step"),
    ({"tts": {"text": "a\x00b"}}, "invalid_character", "tts.text"),
])
def test_bad_updates(body, code, field):
    model, errors = check_update_call(body)
    assert model is None and errors
    if code is None:
        assert errors[0]["field"].startswith("flow")
    else:
        assert (errors[0]["code"], errors[0]["field"]) == (code, field), errors


def call(**extra):
    return {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Hi"}, **extra}


async def check(data):
    return await check_place_call(data, "acct_1", lambda a, n: True)


@pytest.mark.parametrize("names,selected", [
    (None, None),
    (["completed"], {"completed"}),
    (["queued", "ringing", "answered", "completed"], {"queued", "ringing", "in-progress", "completed"}),
    ([], set()),
])
async def test_status_callback_events(names, selected):
    model, errors = await check(call(status_callback_events=names) if names is not None else call())
    assert errors == []
    assert status_events(model.status_callback_events) == (None if selected is None else frozenset(selected))


@pytest.mark.parametrize("names,field", [
    (["initiated"], "status_callback_events.0"),  # unknown name
    (["ringing", "hungup"], "status_callback_events.1"),
    ("completed", "status_callback_events"),  # not a list
    ([1], "status_callback_events.0"),
])
async def test_unknown_status_callback_events_are_refused(names, field):
    _, errors = await check(call(status_callback_events=names))
    assert (errors[0]["code"], errors[0]["field"]) == ("invalid_field", field)


@pytest.mark.parametrize("value,ok", [(1, True), (90, True), (14400, True), (0, False), (14401, False),
                                      (-5, False), (1.5, False), ("60", False)])
async def test_time_limit(value, ok):
    model, errors = await check(call(time_limit=value))
    if ok:
        assert model.time_limit == value
    else:
        assert (errors[0]["code"], errors[0]["field"]) == ("invalid_field", "time_limit")


def test_status_webhooks_follow_the_calls_selection():
    r = Routes.from_queued({"webhook_url": "https://app.example/h", "status_callback_events": ["answered", "completed"],
                            "gather": {"webhook_url": "https://app.example/g"}})
    assert [t for t in ("call.queued", "call.ringing", "call.answered", "call.completed", "call.busy")
            if r.url_for(t)] == ["call.answered", "call.completed"]
    # Not status webhooks: never filtered.
    assert r.url_for("gather.completed") == "https://app.example/g"
    assert r.url_for("recording.completed") == "https://app.example/h"
    every = Routes.from_queued({"webhook_url": "https://app.example/h"})
    assert all(every.url_for(t) for t in ("call.queued", "call.ringing", "call.answered", "call.failed"))


def test_pausable_recorder_writes_silence_and_notes_the_spans():
    from services.common.media_store_spool import MemoryRecorder, PausableRecorder

    frame = b"\x01\x02" * 160  # 20 ms
    rec = PausableRecorder(MemoryRecorder())
    for i in range(150):  # 3 s: paused from 1 s to 2 s
        if i == 50:
            assert rec.pause() == 1000
        if i == 100:
            assert rec.resume() == 2000
        rec.write(frame, frame)
    callee, ours = rec.inner.audio()
    second = 16000
    assert callee[:second] == frame * 50 and callee[second:2 * second] == bytes(second)
    assert ours[2 * second:] == frame * 50
    assert rec.paused_spans() == [{"start_ms": 1000, "end_ms": 2000}]
    rec.pause()
    rec.write(frame, frame)
    assert rec.paused_spans()[-1] == {"start_ms": 3000, "end_ms": 3020}  # an open span ends where it is now


async def test_the_sandbox_callee_hears_the_digits_we_send_as_inband_tones():
    from services.telephony.carrier import Answered, DialRequest
    from services.telephony.sandbox import SandboxCarrier

    heard: list[str] = []

    async def on_heard(req, digits):
        heard.append(digits)

    carrier = SandboxCarrier(speed=8, heard=on_heard)
    s = await carrier.dial(DialRequest("call_x", "+15551234567", "+15559876543"))
    s.start_recording()
    while not isinstance(await asyncio.wait_for(s.events.get(), 10), Answered):
        pass
    assert s.dtmf_method == "inband"
    await asyncio.wait_for(s.send_dtmf("1234567890*#ABCD11"), 30)
    assert heard == ["1234567890*#ABCD11"]  # a repeated digit is heard twice
    _, ours = s.stop_recording()
    assert any(ours)  # the tones are in our side of the recording
    s.close()
