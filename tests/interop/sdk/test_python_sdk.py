"""The Python SDK against the real running API (see conftest.py for how it is found)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from .conftest import SNIPPETS

pytestmark = pytest.mark.interop

DEV_NUMBER = "+15559876543"
TO = "+15551234567"
TTS = {"text": "Hello from Canary!", "voice": "en-US-Neural2-F"}
FINAL = {"completed", "busy", "no-answer", "failed", "canceled"}


def test_docs_snippet_runs_unchanged(api, client):
    source = (SNIPPETS / "quickstart.py").read_text(encoding="utf-8")
    assert 'Canary("YOUR_API_KEY")' in source and "from_=" in source
    out = subprocess.run([sys.executable, "-c", source.replace("YOUR_API_KEY", api.key)],
                         env=api.env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    m = re.fullmatch(r"Call initiated: (call_\w+)\n", out.stdout)
    assert m, out.stdout
    call = client.voice.calls.get(m.group(1))  # no 404 window right after the POST
    assert (call.id, call.to, call.from_, call.direction) == (m.group(1), TO, DEV_NUMBER, "outbound")


def test_create_returns_the_documented_shape_and_get_finds_it(client):
    call = client.voice.call(to=TO, from_=DEV_NUMBER, tts=TTS, record=True, transcribe=True,
                             recording_channels="dual", timeout=20)
    assert call.id.startswith("call_") and call.status == "queued" and call.direction == "outbound"
    assert call.to == TO and call.from_ == DEV_NUMBER and call.created_at
    got = client.voice.calls.get(call.id)
    assert got.id == call.id and got.status in {"queued", "ringing", "in-progress"} | FINAL
    assert got.to_dict()["from"] == DEV_NUMBER


def test_gather_and_audio_url_bodies_are_accepted(client):
    call = client.voice.calls.create(
        to=TO, from_=DEV_NUMBER, tts={"text": "Please enter your 4-digit PIN followed by the pound key."},
        gather={"type": "dtmf", "num_digits": 4, "finish_on_key": "#", "timeout": 10,
                "webhook_url": "https://yourapp.com/webhooks/dtmf"})
    assert call.status == "queued"
    with pytest.raises(Exception) as err:  # exactly one of tts / audio_url
        client.voice.call(to=TO, from_=DEV_NUMBER, tts=TTS, audio_url="https://example.com/a.mp3")
    from canary import InvalidRequestError

    assert isinstance(err.value, InvalidRequestError) and err.value.status == 422


def test_list_auto_paginates(client):
    since = (datetime.now(timezone.utc) - timedelta(seconds=2)).isoformat()
    ids = {client.voice.call(to=TO, from_=DEV_NUMBER, tts=TTS).id for _ in range(3)}
    page = client.voice.calls.list(created_after=since, from_=DEV_NUMBER, limit=1)
    assert len(page.data) == 1 and page.has_more and page.next_cursor
    seen = [c.id for c in page]
    assert ids <= set(seen) and len(seen) == len(set(seen))
    assert len(list(page.iter_pages())) >= 3


def test_hangup(client):
    from canary import ConflictError

    call = client.voice.call(to=TO, from_=DEV_NUMBER, tts=TTS)
    try:
        hung = client.voice.calls.hangup(call.id)
        assert hung.id == call.id
    except ConflictError as exc:  # the sandbox finished it first
        assert exc.code == "call_already_ended"


def test_events_timeline(client):
    call = client.voice.call(to=TO, from_=DEV_NUMBER, tts=TTS)
    events = client.voice.calls.events(call.id)
    assert isinstance(events, list)
    for e in events:
        assert e.id and e.type and e.occurred_at


def test_typed_errors_carry_code_field_status(api, client):
    from canary import (AuthenticationError, Canary, ConflictError, InvalidRequestError, NotFoundError,
                        PermissionDeniedError)

    with pytest.raises(InvalidRequestError) as bad:
        client.voice.call(to="12345", from_=DEV_NUMBER, tts=TTS)
    assert bad.value.status == 422 and bad.value.field == "to" and bad.value.code
    with pytest.raises(PermissionDeniedError) as unverified:
        client.voice.call(to=TO, from_="+15550000001", tts=TTS)
    assert unverified.value.status == 403 and unverified.value.code == "number_not_verified"
    assert unverified.value.field == "from"
    with pytest.raises(NotFoundError) as nf:
        client.voice.calls.get("call_doesnotexist0")
    assert nf.value.code == "call_not_found"
    with pytest.raises(NotFoundError):
        client.voice.calls.recording("call_doesnotexist0")
    with pytest.raises(AuthenticationError) as auth:
        Canary("sk_test_not_a_real_key", base_url=api.url).voice.calls.get("call_x1")
    assert auth.value.status == 401
    key = f"sdk-{uuid.uuid4()}"
    with pytest.raises(ConflictError) as conflict:
        client.voice.call(to=TO, from_=DEV_NUMBER, tts=TTS, idempotency_key=key)
        client.voice.call(to=TO, from_=DEV_NUMBER, tts={"text": "different"}, idempotency_key=key)
    assert conflict.value.code == "idempotency_key_reused" and conflict.value.status == 409


def test_idempotency_key_returns_the_same_call(client):
    key = f"sdk-{uuid.uuid4()}"
    a = client.voice.call(to=TO, from_=DEV_NUMBER, tts=TTS, idempotency_key=key)
    b = client.voice.call(to=TO, from_=DEV_NUMBER, tts=TTS, idempotency_key=key)
    assert a.id == b.id


def test_voices_and_numbers(client):
    voices = {v.id: v for v in client.voice.voices.list()}
    assert "en-US-Neural2-F" in voices and voices["en-US-Neural2-F"].language == "en-US"
    assert DEV_NUMBER in {n.number for n in client.voice.numbers.list()}
    number = "+1555" + str(uuid.uuid4().int)[:7]
    created = client.voice.numbers.create(number)
    assert created.number == number and created.created_at
    assert number in {n.number for n in client.voice.numbers.list()}
    client.voice.numbers.delete(number)
    assert number not in {n.number for n in client.voice.numbers.list()}


def test_flows_crud(client):
    from canary import NotFoundError

    doc = {"name": "sdk test", "start": "hello",
           "steps": {"hello": {"kind": "say", "text": "Hi", "next": "bye"}, "bye": {"kind": "hangup"}}}
    flow = client.voice.flows.create(doc)
    assert flow.id
    assert client.voice.flows.get(flow.id).id == flow.id
    assert flow.id in {f.id for f in client.voice.flows.list()}
    updated = client.voice.flows.update(flow.id, {**doc, "name": "sdk test v2"})
    assert updated.id == flow.id
    assert len(client.voice.flows.versions(flow.id)) >= 2
    client.voice.flows.delete(flow.id)
    with pytest.raises(NotFoundError):
        client.voice.flows.get(flow.id)


def test_flows_validate_and_simulate(client):
    menu = {"name": "sdk menu", "start": "menu", "steps": {
        "menu": {"kind": "gather", "num_digits": 1, "prompt": {"kind": "say", "text": "Press 1 for sales."},
                 "branches": {"1": "sales"}, "default": "bye", "on_timeout": "bye"},
        "sales": {"kind": "say", "text": "Sales.", "next": "bye"}, "bye": {"kind": "hangup"}}}
    ok = client.voice.flows.validate(menu)
    assert ok.valid is True and ok.errors == []
    broken = client.voice.flows.validate({**menu, "steps": {**menu["steps"], "menu": {
        **menu["steps"]["menu"], "branches": {"1": "nowhere"}}}})
    assert broken.valid is False and any("nowhere" in e["message"] for e in broken.errors)
    walked = client.voice.flows.simulate(menu, inputs=[{"press": "1"}])
    assert walked.path[:2] == ["menu", "sales"]
    stored = client.voice.flows.create(menu)
    assert client.voice.flows.simulate(flow_id=stored.id, inputs=[{"press": "1"}]).path == walked.path
    client.voice.flows.delete(stored.id)


def test_keys_create_list_revoke(client):
    from canary import NotFoundError

    made = client.voice.keys.create()
    assert made.key.startswith("sk_test_") and made.key.startswith(made.prefix)
    listed = {k.id: k for k in client.voice.keys.list()}
    assert made.id in listed and "key" not in listed[made.id]  # the key itself is shown once
    client.voice.keys.revoke(made.id)
    assert client.voice.keys.list() and next(k for k in client.voice.keys.list() if k.id == made.id).revoked_at
    with pytest.raises(NotFoundError):
        client.voice.keys.revoke(made.id)


def test_sandbox_callees_list(client):
    assert isinstance(list(client.voice.sandbox.callees.list()), list)


async def test_async_client(api):
    from canary import AsyncCanary

    async with AsyncCanary(api.key, base_url=api.url) as c:
        call = await c.voice.call(to=TO, from_=DEV_NUMBER, tts=TTS, record=True)
        assert (await c.voice.calls.get(call.id)).id == call.id
        found = False
        async for listed in c.voice.calls.list(from_=DEV_NUMBER, limit=5):
            if listed.id == call.id:
                found = True
                break
        assert found
        assert "en-US-Neural2-F" in [v.id async for v in c.voice.voices.list()]


def test_recording_download_when_the_pipeline_runs(api, client):
    """Needs the whole service (`make run`): waits for the call to end and its recording."""
    from canary import NotFoundError

    call = client.voice.call(to=TO, from_=DEV_NUMBER, tts=TTS, record=True)
    # With the pipeline the fixture started, a call that stays queued is a failure; an API
    # found running may have no pipeline behind it, which a long enough wait tells.
    deadline = time.monotonic() + 60
    status = "queued"
    while time.monotonic() < deadline and status == "queued":
        status = client.voice.calls.get(call.id).status
        time.sleep(0.3)
    if status == "queued":
        if api.own_pipeline:
            pytest.fail("the call stayed queued for 60 s although the fixture runs the call pipeline")
        pytest.skip("calls stay queued: only the API is running, not the call pipeline (`make run`)")
    deadline = time.monotonic() + 60
    while True:
        try:
            rec = client.voice.calls.recording(call.id)
            break
        except NotFoundError as exc:
            assert exc.code in {"recording_not_found"}
            if time.monotonic() > deadline:
                pytest.fail(f"no recording 60 s after the call started (status {client.voice.calls.get(call.id).status})")
            time.sleep(0.5)
    assert rec.call_id == call.id and rec.url and rec.duration is not None
    audio = client.voice.calls.download_recording(rec)
    assert isinstance(audio, bytes) and len(audio) > 100
    # ID3 tag, an MPEG audio frame sync (11 set bits; 8 kHz telephone audio is MPEG-2.5), or WAV
    assert audio[:3] == b"ID3" or (audio[0] == 0xFF and audio[1] & 0xE0 == 0xE0) or audio[:4] == b"RIFF"


def test_update_a_live_call(client):
    """calls.update on a real call: digits while a gather holds it, a hangup by status, then 409."""
    from canary import ConflictError

    call = client.voice.call(to=TO, from_=DEV_NUMBER, tts={"text": "Enter your PIN."},
                             gather={"type": "dtmf", "num_digits": 4, "timeout": 30})
    deadline = time.monotonic() + 60
    while client.voice.calls.get(call.id).status != "in-progress":
        assert time.monotonic() < deadline, "the call was not answered"
        time.sleep(0.2)
    sent = client.voice.calls.update(call.id, send_digits="12#")
    assert sent.id == call.id and sent.update.changes == ["send_digits"] and sent.update.id
    hung = client.voice.calls.update(call.id, status="completed")
    assert hung.update.changes == ["status"]
    while client.voice.calls.get(call.id).status not in FINAL:
        assert time.monotonic() < deadline + 30, "the call did not end"
        time.sleep(0.2)
    with pytest.raises(ConflictError) as exc:
        client.voice.calls.update(call.id, send_digits="1")
    assert exc.value.code == "call_not_live"
    types = [e.type for e in client.voice.calls.events(call.id)]
    assert "call.updated" in types and "dtmf.send.requested" in types, types
