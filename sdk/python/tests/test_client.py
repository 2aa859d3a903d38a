"""Request shapes, pagination, models and configuration (local scripted server)."""

import pytest

from canary import AsyncCanary, Call, Canary, CanaryError, DEFAULT_BASE_URL, Recording, RecordingRef

from .conftest import Reply

CALL = {"id": "call_1", "to": "+15551234567", "from": "+15559876543", "status": "queued",
        "direction": "outbound", "created_at": "2024-01-01T12:00:00Z"}


def test_base_url_from_env(monkeypatch):
    monkeypatch.delenv("CANARY_API_URL", raising=False)
    assert Canary("k").base_url == DEFAULT_BASE_URL == "https://api.canarymsg.dev"
    monkeypatch.setenv("CANARY_API_URL", "http://127.0.0.1:8080/")
    assert Canary("k").base_url == "http://127.0.0.1:8080"
    assert Canary("k", base_url="http://x:1").base_url == "http://x:1"


def test_api_key_from_env(monkeypatch):
    monkeypatch.delenv("CANARY_API_KEY", raising=False)
    with pytest.raises(CanaryError):
        Canary()
    monkeypatch.setenv("CANARY_API_KEY", "sk_test_env")
    assert Canary().api_key == "sk_test_env"


def test_call_object():
    call = Call({**CALL, "recording": {"id": "rec_1", "duration": 3, "url": "/m"},
                 "transcription": {"text": "hi", "confidence": 0.9}, "gather": {"status": "completed", "digits": "1"},
                 "new_field": 7})
    assert call.id == "call_1" and call.from_ == "+15559876543" and call["from"] == "+15559876543"
    assert call.duration is None  # declared, absent
    assert call.transcription.text == "hi" and call.recording.duration == 3 and call.gather.digits == "1"
    assert isinstance(call.recording, RecordingRef)
    assert call.new_field == 7  # forward compatible
    with pytest.raises(AttributeError):
        call.nonexistent
    with pytest.raises(AttributeError):
        call.id = "x"
    assert call.to_dict()["from"] == "+15559876543" and call == call.to_dict()


def test_list_auto_paginates(server):
    server.then(
        Reply(200, {"data": [CALL, {**CALL, "id": "call_2"}], "has_more": True, "next_cursor": "c2"}),
        Reply(200, {"data": [{**CALL, "id": "call_3"}], "has_more": False, "next_cursor": None}),
    )
    client = Canary("k", base_url=server.url)
    page = client.voice.calls.list(status="queued", from_="+15559876543", limit=2)
    assert [c.id for c in page.data] == ["call_1", "call_2"] and page.has_more
    assert [c.id for c in page] == ["call_1", "call_2", "call_3"]
    assert server.requests[0]["path"] == "/v1/voice/calls?status=queued&from=%2B15559876543&limit=2"
    assert "cursor=c2" in server.requests[1]["path"] and "status=queued" in server.requests[1]["path"]


async def test_async_list_auto_paginates(server):
    server.then(
        Reply(200, {"data": [CALL], "has_more": True, "next_cursor": "c2"}),
        Reply(200, {"data": [{**CALL, "id": "call_2"}], "has_more": False, "next_cursor": None}),
        Reply(200, {"data": [CALL], "has_more": True, "next_cursor": "c2"}),
    )
    async with AsyncCanary("k", base_url=server.url) as client:
        ids = [c.id async for c in client.voice.calls.list()]
        assert ids == ["call_1", "call_2"]
        first = await client.voice.calls.list()
        assert [c.id for c in first.data] == ["call_1"] and first.has_next_page()


def test_paths_and_methods(server):
    rec = {"id": "rec_1", "call_id": "call_1", "duration": 45, "url": "/media/rec_1.mp3?sig=abc",
           "transcription": {"text": "hello", "confidence": 0.95}}
    server.then(
        Reply(200, {**CALL, "status": "canceled"}),
        Reply(200, {"data": [{"id": "evt_1", "type": "call.queued", "call_id": "call_1",
                              "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}]}),
        Reply(200, rec),
        Reply(200, raw=b"ID3fakeaudio", headers={"Content-Type": "audio/mpeg"}),
        Reply(200, {"data": [{"id": "en-US-Neural2-F", "language": "en-US"}]}),
        Reply(200, {"data": [{"number": "+15559876543"}]}),
        Reply(201, {"number": "+15550001111"}),
        Reply(204),
    )
    c = Canary("k", base_url=server.url)
    assert c.voice.calls.hangup("call_1").status == "canceled"
    (event,) = c.voice.calls.events("call_1")
    assert event.type == "call.queued" and event.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    r = c.voice.calls.recording("call_1")
    assert r.transcription.confidence == 0.95
    assert c.voice.calls.download_recording(r) == b"ID3fakeaudio"
    assert [v.id for v in c.voice.voices.list()] == ["en-US-Neural2-F"]
    assert [n.number for n in c.voice.numbers.list()] == ["+15559876543"]
    assert c.voice.numbers.create("+15550001111").number == "+15550001111"
    assert c.voice.numbers.delete("+15550001111") is None
    got = [(r["method"], r["path"].split("?")[0]) for r in server.requests]
    assert got == [
        ("POST", "/v1/voice/calls/call_1/hangup"),
        ("GET", "/v1/voice/calls/call_1/events"),
        ("GET", "/v1/voice/calls/call_1/recording"),
        ("GET", "/media/rec_1.mp3"),
        ("GET", "/v1/voice/voices"),
        ("GET", "/v1/voice/numbers"),
        ("POST", "/v1/voice/numbers"),
        ("DELETE", "/v1/voice/numbers/%2B15550001111"),
    ]
    assert server.requests[3]["headers"]["authorization"] == "Bearer k"  # same origin: signed by key too


def test_key_is_not_sent_to_another_host(server):
    other = server.url.replace("127.0.0.1", "localhost")
    server.then(Reply(200, raw=b"audio"))
    c = Canary("k", base_url=server.url)
    assert c.voice.calls.download_recording(Recording({"id": "rec_1", "url": other + "/r.mp3"})) == b"audio"
    assert "authorization" not in server.requests[0]["headers"]


def test_bad_ids_are_rejected_before_any_request():
    with pytest.raises(CanaryError):
        Canary("k", base_url="http://127.0.0.1:9").voice.calls.get("")


def test_create_with_dial_sends_the_click_to_call_option(server):
    server.then(Reply(201, CALL))
    c = Canary("k", base_url=server.url)
    call = c.voice.calls.create(to="+15551234567", from_="+15559876543", tts={"text": "Connecting you."},
                                dial={"to": "+15557770010", "timeout": 20, "record": True})
    assert call.id == "call_1"
    assert server.requests[0]["body"] == {"to": "+15551234567", "from": "+15559876543",
                                          "tts": {"text": "Connecting you."},
                                          "dial": {"to": "+15557770010", "timeout": 20, "record": True}}
