"""The gateway's side of speech gather and sandbox callee speech, with fake Kafka and carrier.

The gateway recognises nothing itself: it streams the gather's audio, completes the gather
on the matching ``speech.recognized``, and ends it on its timer when no result comes. A
scripted callee's line is a ``sandbox.speech.requested`` answered by the TTS service.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from events import decode, new_envelope, topics
from services.common.audio import silence, tone
from services.lib.speech import Endpointer
from services.telephony import gateway as gw_mod
from services.telephony.carrier import DialRequest, Ended
from services.telephony.gateway import Gateway, LiveCall


class FakeProducer:
    def __init__(self):
        self.events, self.audio = [], []

    async def send(self, topic, value, key=None, headers=None):
        if topic == topics.MEDIA_AUDIO:
            self.audio.append((value, dict(headers)))
        else:
            self.events.append(decode(value))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


class FakeGateway:
    def __init__(self):
        self.producer = FakeProducer()
        self.stopping = asyncio.Event()

    async def ended(self, call):
        pass


class FakeSession:
    call_id = "call_s"

    def __init__(self):
        self.events: asyncio.Queue = asyncio.Queue()
        self.cb = None

    def on_audio(self, cb):
        self.cb = cb

    def speak(self, pcm: bytes):
        for i in range(0, len(pcm), 320):
            self.cb(pcm[i:i + 320])

    async def hangup(self):
        self.events.put_nowait(Ended("completed", "hung up by caller", hangup_by="caller"))

    def close(self):
        pass


def _dial():
    return new_envelope("dial.requested", "call_s", "acct_1", {"to": "+15551234567", "from": "+15559876543"})


async def _open_gather(timeout: float = 5.0, **extra):
    gw, session = FakeGateway(), FakeSession()
    dial = _dial()
    call = LiveCall(gw, dial, session)
    gather = dial.caused("gather.requested", {"type": "speech", "timeout": timeout, "hints": ["sales", "billing"],
                                              "language": "en", "step": "menu", **extra}, step="gather")
    await call._instruction(gather)
    return gw, session, call, gather


def _types(gw):
    return [e.type for e in gw.producer.events]


def test_speech_gather_streams_its_audio_and_completes_on_its_result():
    async def scenario():
        gw, session, call, gather = await _open_gather()
        session.speak(silence(300) + tone(300, 1000) + silence(900))
        await asyncio.sleep(0)
        # every chunk of the gather says why it is streamed, and which gather it answers
        assert gw.producer.audio
        for _, h in gw.producer.audio:
            assert h["purpose"] == b"gather"
            assert orjson.loads(h["gather"]) == {"id": gather.id, "step": "menu", "hints": ["sales", "billing"],
                                                 "language": "en"}
        # the utterance's end is flushed at once: what went out ends on the frame that ended it
        # (speech to 1300 ms + 800 ms of quiet), not with the next full 200 ms chunk
        assert sum(len(v) for v, _ in gw.producer.audio) == 2100 * 16
        # a result for another gather (a stale one) changes nothing
        other = new_envelope("speech.recognized", "call_s", "acct_1", {"gather_id": "other", "text": "sales",
                                                                       "confidence": 0.9})
        await call.on_recognized(other)
        assert "gather.completed" not in _types(gw)
        ok = new_envelope("speech.recognized", "call_s", "acct_1", {
            "gather_id": gather.id, "step": "menu", "text": "Billing, please.", "confidence": 0.874,
            "matched_hint": "billing", "language": "en", "offset_ms": 100, "duration_ms": 2000})
        await call.on_recognized(ok)
        await call.on_recognized(ok)  # redelivered: the gather is over
        done = [e for e in gw.producer.events if e.type == "gather.completed"]
        assert len(done) == 1 and done[0].causation_id == gather.id
        # the public payload is what it was when the gateway ran whisper itself
        assert done[0].data == {"digits": "", "finished_on_key": None, "step": "menu",
                                "speech": {"text": "Billing, please.", "confidence": 0.874,
                                           "matched_hint": "billing"}}
        n = len(gw.producer.audio)
        session.speak(tone(300, 400))
        await asyncio.sleep(0)
        assert len(gw.producer.audio) == n  # the gather is closed: nothing more is streamed
        call.close()

    asyncio.run(scenario())


def test_a_recognition_error_completes_the_gather_with_the_error():
    async def scenario():
        gw, session, call, gather = await _open_gather()
        await call.on_recognized(new_envelope("speech.recognized", "call_s", "acct_1", {
            "gather_id": gather.id, "text": "", "confidence": 0.0, "error": "recognition failed"}))
        (done,) = [e for e in gw.producer.events if e.type == "gather.completed"]
        assert done.data["speech"] == {"text": "", "confidence": 0.0, "error": "recognition failed"}
        call.close()

    asyncio.run(scenario())


def test_no_speech_is_the_no_input_timeout():
    async def scenario():
        gw, session, call, gather = await _open_gather(timeout=0.2)
        session.speak(silence(400))
        await asyncio.sleep(0.5)
        assert [e.data for e in gw.producer.events if e.type == "gather.timeout"] == [{"digits": "", "step": "menu"}]
        call.close()

    asyncio.run(scenario())


def test_a_result_that_never_comes_ends_the_gather_on_its_timer(monkeypatch):
    monkeypatch.setattr(gw_mod, "SPEECH_RECOGNITION_S", 0.3)

    async def scenario():
        gw, session, call, gather = await _open_gather(timeout=0.2)
        call.endpointer = Endpointer(max_ms=400)  # short cap, so the timer's hold is short too
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        session.speak(tone(300, 200))  # speech started: the first-input timeout no longer applies
        await asyncio.sleep(0.35)
        assert "gather.timeout" not in _types(gw)
        while "gather.timeout" not in _types(gw) and loop.time() - t0 < 3:
            await asyncio.sleep(0.05)
        # nobody answered (speech worker down): the same outcome as no input at all
        (ev,) = [e for e in gw.producer.events if e.type.startswith("gather.")]
        assert ev.type == "gather.timeout" and ev.data == {"digits": "", "step": "menu"}
        assert 0.6 <= loop.time() - t0 < 1.5  # hold = cap (0.4 s) + result wait (0.3 s)
        call.close()

    asyncio.run(scenario())


def test_a_key_during_speech_completes_the_gather_and_the_late_result_is_ignored():
    async def scenario():
        from services.telephony.carrier import DtmfReceived

        gw, session, call, gather = await _open_gather(type="dtmf speech", num_digits=1)
        session.speak(tone(300, 300))
        await call._on_digit(DtmfReceived("2", duration_ms=100, method="rfc4733"))
        await call.on_recognized(new_envelope("speech.recognized", "call_s", "acct_1", {
            "gather_id": gather.id, "text": "sales", "confidence": 0.9}))
        done = [e for e in gw.producer.events if e.type == "gather.completed"]
        assert [d.data["digits"] for d in done] == ["2"] and done[0].data.get("speech") is None
        call.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("answer", ["sandbox.speech.rendered", "sandbox.speech.failed", None])
def test_a_sandbox_callee_line_is_rendered_by_the_tts_service(monkeypatch, answer):
    monkeypatch.setattr(gw_mod, "SANDBOX_RENDER_S", 0.3)

    async def scenario():
        gw = Gateway(carriers={})
        gw.producer = FakeProducer()
        loaded = []

        async def load_audio(ref):
            loaded.append(ref)
            return b"\x01\x00" * 800

        gw.load_audio = load_audio
        req = DialRequest(call_id="call_s", to="+15557770003", from_="+15559876543", timeout_s=30,
                          account_id="acct_1")
        line = asyncio.create_task(gw._speak(req, "I have a question about billing.", "en-US-Neural2-D"))
        await asyncio.sleep(0.01)
        (asked,) = gw.producer.events
        assert asked.type == "sandbox.speech.requested" and asked.call_id == "call_s"
        assert asked.data == {"text": "I have a question about billing.", "voice": "en-US-Neural2-D"}
        if answer == "sandbox.speech.rendered":
            await gw.dispatch(asked.caused(answer, {"audio_ref": "sha256:ab.wav", "duration_ms": 100}))
        elif answer:
            await gw.dispatch(asked.caused(answer, {"reason": "unknown voice"}))
        pcm = await line
        if answer == "sandbox.speech.rendered":
            assert loaded == ["sha256:ab.wav"] and len(pcm) == 1600
        else:  # not rendered (failed, or no answer in time): the callee says nothing
            assert loaded == [] and pcm == b""
        assert gw._renders == {}

    asyncio.run(scenario())
