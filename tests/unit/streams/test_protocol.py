"""The Twilio Media Streams messages we build and the app messages we parse (pure)."""

from __future__ import annotations

import base64

import orjson
import pytest

from services.common.audio import ulaw_encode
from services.telephony.streams import protocol as p

SID = p.stream_sid("0b6f3c0e-1d2a-4c1e-9f00-000000000001")


def test_stream_sid_is_twilio_shaped_and_stable():
    assert SID.startswith("MZ") and len(SID) == 34
    assert p.stream_sid("0b6f3c0e-1d2a-4c1e-9f00-000000000001") == SID  # a redelivered instruction: same stream
    assert p.stream_sid("0b6f3c0e-1d2a-4c1e-9f00-000000000002") != SID


def test_message_order_and_fields_follow_twilio():
    out = p.Outgoing(SID, "call_1", "acct_1")
    connected = orjson.loads(out.connected())
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = orjson.loads(out.start(p.TRACKS["both"], {"lang": "en"}))
    assert start["event"] == "start" and start["sequenceNumber"] == "1" and start["streamSid"] == SID
    assert start["start"] == {"streamSid": SID, "accountSid": "acct_1", "callSid": "call_1",
                              "tracks": ["inbound", "outbound"], "customParameters": {"lang": "en"},
                              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
    frame = bytes(range(256)) + bytes(64)  # 160 samples of 16-bit PCM
    m1 = orjson.loads(out.media("inbound", frame, 0))
    m2 = orjson.loads(out.media("outbound", frame, 0))
    m3 = orjson.loads(out.media("inbound", frame, 20))
    # Numbers are strings, as Twilio sends them; chunks count per track, sequence numbers per stream.
    assert (m1["sequenceNumber"], m1["media"]["chunk"], m1["media"]["timestamp"]) == ("2", "1", "0")
    assert (m2["media"]["track"], m2["media"]["chunk"]) == ("outbound", "1")
    assert (m3["sequenceNumber"], m3["media"]["chunk"], m3["media"]["timestamp"]) == ("4", "2", "20")
    assert base64.b64decode(m1["media"]["payload"]) == ulaw_encode(frame)
    assert len(base64.b64decode(m1["media"]["payload"])) == 160  # 20 ms of mu-law
    assert orjson.loads(out.dtmf("5"))["dtmf"] == {"track": "inbound_track", "digit": "5"}
    assert orjson.loads(out.mark("greeting"))["mark"] == {"name": "greeting"}
    stop = orjson.loads(out.stop())
    assert stop["event"] == "stop" and stop["stop"] == {"accountSid": "acct_1", "callSid": "call_1"}
    assert stop["sequenceNumber"] == "7"


def _media(payload: str, **extra) -> bytes:
    return orjson.dumps({"event": "media", "streamSid": SID, "media": {"payload": payload}, **extra})


def test_parse_app_messages():
    ulaw = bytes([0xFF] * 160)  # mu-law silence
    m = p.parse(_media(base64.b64encode(ulaw).decode()), SID)
    assert isinstance(m, p.Media) and len(m.pcm) == 320
    assert p.parse(orjson.dumps({"event": "mark", "streamSid": SID, "mark": {"name": "m1"}}), SID) == p.Mark("m1")
    assert p.parse('{"event": "clear", "streamSid": "%s"}' % SID, SID) == p.Clear()
    # streamSid may be left out (some apps do): it is this stream's.
    assert p.parse('{"event": "clear"}', SID) == p.Clear()


@pytest.mark.parametrize("raw, why", [
    (b"not json", "not JSON"),  # garbage: ignored, the stream goes on
    (b"[1, 2]", "not a JSON object"),
    (b'{"event": "media", "media": {}}', "media without a payload"),
    (b'{"event": "media", "media": "abc"}', "media without a payload"),
    (b'{"event": "media", "media": {"payload": "***"}}', "media payload is not base64"),
    (b'{"event": "mark", "mark": {}}', "mark without a name"),
    (b'{"event": "mark", "mark": {"name": 5}}', "mark without a name"),
    (b'{"event": "dance"}', "unknown event 'dance'"),  # future/unknown events are ignored, as Twilio does
    (b'{"event": "clear", "streamSid": "MZother"}', "streamSid 'MZother' is not this stream"),
])
def test_parse_never_raises_on_bad_input(raw, why):
    m = p.parse(raw, SID)
    assert isinstance(m, p.Invalid) and m.reason == why


def test_parse_refuses_oversized_messages_and_payloads():
    big = base64.b64encode(bytes(p.MAX_MEDIA_BYTES + 8)).decode()
    assert p.parse(_media(big), SID).reason.startswith("media payload too long")
    assert p.parse(b" " * (p.MAX_MESSAGE_BYTES + 1), SID).reason.startswith("message too large")


def test_ulaw_encode_matches_the_reference_table_for_every_sample():
    import numpy as np

    from services.common import audio

    every = np.arange(-32768, 32768, dtype="<i2").tobytes()
    reference = audio._ULAW_ENC[np.frombuffer(every, dtype="<i2").astype(np.int32) + 32768].tobytes()
    assert audio.ulaw_encode(every) == reference
    assert audio.ulaw_encode(every + b"\x01") == reference  # a trailing odd byte is dropped, as before


def test_stream_events_are_webhooks_to_the_calls_url():
    from events import new_envelope
    from services.webhooks.payloads import Routes, payload

    env = new_envelope("stream.failed", "call_1", "acct_1", {"stream_sid": SID, "url": "wss://bot.example.com/m",
                                                             "track": "inbound", "bidirectional": True,
                                                             "reason": "connect timed out after 5 s"})
    body = payload(env)
    assert body["type"] == "stream.failed" and body["reason"] == "connect timed out after 5 s"
    assert body["stream_sid"] == SID and body["event_id"] == env.id and "step" not in body
    assert Routes(webhook_url="https://app.example.com/status").url_for("stream.started") == \
        "https://app.example.com/status"
