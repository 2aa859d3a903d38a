"""Speech gather recognition without Kafka or whisper: the stream the gateway sends, the
worker's endpointing, hint matching, the speech.recognized event, and that the live
transcription worker leaves gather-only audio alone."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest

from events import decode_typed, encode
from services.common.audio import silence, tone
from services.telephony.streaming import AudioStreamer
from services.transcription.engine import Transcript
from services.transcription.live import LiveTranscription
from services.transcription.speech_gather import GatherConfig, SpeechGather

CHUNK = 3200  # 200 ms
GATHER = {"id": "0b6c1c1e-4f0e-5b5a-9d7c-1d2e3f4a5b6c", "step": "menu", "hints": ["sales", "support", "billing"],
          "language": "en"}



@pytest.fixture(autouse=True)
def _energy_vad(monkeypatch):
    # These tests are about segmentation (partials, finals, order, bounds) on synthetic
    # tones, which only the energy VAD calls speech; the Silero VAD has its own tests.
    monkeypatch.setenv("CANARY_VAD", "energy")


def chunks(pcm: bytes):
    return [pcm[i:i + CHUNK] for i in range(0, len(pcm), CHUNK)]


def headers(seq: int, offset_ms: int, *, gather: dict | None = GATHER, purpose: str = "gather", final: bool = False):
    h = [("account_id", b"acct_1"), ("channel", b"callee"), ("seq", str(seq).encode()),
         ("offset_ms", str(offset_ms).encode()), ("final", b"1" if final else b"0"), ("purpose", purpose.encode())]
    if gather is not None:
        h.append(("gather", orjson.dumps(gather)))
    return h


class FakeWhisper:
    def __init__(self, text: str = "I have a question about billing", fail: bool = False):
        self.text, self.fail, self.heard = text, fail, []

    def transcribe(self, pcm: bytes, language=None) -> Transcript:
        self.heard.append((len(pcm) // 16, language))
        if self.fail:
            raise RuntimeError("model exploded")
        return Transcript(text=f" {self.text} ", confidence=0.8123, language=language or "en")


def feed(core: SpeechGather, pcm: bytes, call: str = "call_a", **kw):
    jobs = []
    for i, c in enumerate(chunks(pcm)):
        job = core.accept(call.encode(), c, headers(i, i * 200, **kw), pos=("tp0", 100 + i))
        if job is not None:
            jobs.append(job)
    return jobs


async def run_jobs(core: SpeechGather, jobs):
    return [await core.process(j) for j in jobs]


def test_the_first_utterance_of_a_gather_is_recognised_once_with_its_hint():
    out = []

    async def emit(env):
        out.append(env)

    w = FakeWhisper()
    core = SpeechGather(emit, transcriber=w)
    pcm = silence(1000) + tone(300, 1500) + silence(1000) + tone(300, 800) + silence(1000)
    jobs = feed(core, pcm)
    assert len(jobs) == 1  # the answer is the first utterance; later speech in the gather is not
    (env,) = asyncio.run(run_jobs(core, jobs))
    assert env.type == "speech.recognized" and env.call_id == "call_a" and env.account_id == "acct_1"
    assert env.causation_id == GATHER["id"]
    d = env.data
    assert d["gather_id"] == GATHER["id"] and d["step"] == "menu"
    assert d["text"] == "I have a question about billing" and d["confidence"] == 0.812
    assert d["matched_hint"] == "billing" and "error" not in d
    assert 800 <= d["offset_ms"] <= 1000  # speech at 1000 ms, with up to 200 ms of lead-in
    assert 1500 <= d["duration_ms"] <= 1500 + 200 + 800
    assert w.heard == [(d["duration_ms"], "en")]  # the gather's language goes to whisper
    decode_typed(encode(env))  # valid against the catalog
    # re-reading the same stream (a restart) gives the same id: the gateway dedupes
    again = feed(SpeechGather(emit, transcriber=w), pcm)
    assert [j.event_id() for j in again] == [env.id]


def test_a_failed_recognition_is_still_an_answer():
    out = []

    async def emit(env):
        out.append(env)

    core = SpeechGather(emit, transcriber=FakeWhisper(fail=True))
    (env,) = asyncio.run(run_jobs(core, feed(core, silence(400) + tone(300, 900) + silence(1000))))
    assert env.data["text"] == "" and env.data["confidence"] == 0.0 and env.data["error"] == "recognition failed"
    assert "matched_hint" not in env.data and core.stats["failed"] == 1


def test_chunks_without_an_open_gather_are_not_recognised():
    core = SpeechGather(lambda e: None, transcriber=FakeWhisper())
    pcm = silence(400) + tone(300, 900) + silence(1000)
    assert feed(core, pcm, gather=None, purpose="transcribe") == []
    assert feed(core, pcm, purpose="transcribe") == []  # a gather header alone is not the purpose
    assert core.stats["other_purpose"] == 2 * len(chunks(pcm)) and not core.calls


def test_a_new_gather_starts_fresh_and_a_closed_one_is_forgotten():
    core = SpeechGather(lambda e: None, transcriber=FakeWhisper())
    speech = chunks(silence(200) + tone(300, 600))
    for i, c in enumerate(speech):  # speech under way in gather 1...
        assert core.accept(b"call_a", c, headers(i, i * 200)) is None
    assert core.calls["call_a"].gather_id == GATHER["id"]
    # ...which the gateway closes (DTMF): the next chunk carries no gather
    n = len(speech)
    assert core.accept(b"call_a", silence(200), headers(n, n * 200, gather=None, purpose="transcribe")) is None
    assert "call_a" not in core.calls
    g2 = {**GATHER, "id": "second", "hints": ["yes", "no"]}
    jobs = []
    for i, c in enumerate(chunks(silence(200) + tone(300, 600) + silence(1000)), start=n + 1):
        job = core.accept(b"call_a", c, headers(i, i * 200, gather=g2))
        jobs += [job] if job else []
    assert len(jobs) == 1 and jobs[0].stream.gather_id == "second" and jobs[0].stream.hints == ["yes", "no"]
    # the call's final chunk ends everything for it
    core.accept(b"call_b", tone(300, 200), headers(0, 0))
    assert "call_b" in core.calls
    core.accept(b"call_b", b"", headers(1, 200, final=True))
    assert "call_b" not in core.calls


def test_commits_hold_at_the_first_chunk_of_an_unanswered_gather_and_idle_ones_go():
    core = SpeechGather(lambda e: None, transcriber=FakeWhisper(), cfg=GatherConfig(idle_s=5))
    core.accept(b"call_a", tone(300, 200), headers(0, 0), now=100.0, pos=("tp0", 40))
    core.accept(b"call_b", tone(300, 200), headers(0, 0), now=100.0, pos=("tp0", 41))
    assert core.holds() == {"tp0": 40}
    feed(core, silence(200) + tone(300, 600) + silence(1000), call="call_a")  # call_a's stream was created at 40
    assert core.calls["call_a"].answered and core.holds() == {"tp0": 41}
    assert core.evict_idle(now=core.calls["call_b"].last_seen + 6) == 1 and "call_b" not in core.calls


def test_malformed_gather_headers_are_skipped():
    core = SpeechGather(lambda e: None, transcriber=FakeWhisper())
    bad = [("account_id", b"acct_1"), ("seq", b"0"), ("purpose", b"gather"), ("gather", b"{not json")]
    assert core.accept(b"call_a", tone(300, 200), bad) is None
    assert core.accept(b"call_a", tone(300, 200), [("seq", b"0")]) is None
    assert core.stats["skipped"] == 2


class FakeProducer:
    def __init__(self):
        self.sent = []

    async def send(self, topic, value, key=None, headers=None):
        self.sent.append((value, dict(headers)))


@pytest.mark.parametrize("transcribe", [False, True])
def test_streamer_tags_gather_audio_and_flushes_at_once(transcribe):
    async def scenario():
        p = FakeProducer()
        s = AudioStreamer(p, "call_a", "acct_1")
        if transcribe:
            s.start_transcribe()
        for _ in range(5):
            s.add(bytes(320))  # before the gather
        s.open_gather("g1", step="menu", hints=["billing"], language="en")
        for _ in range(13):
            s.add(bytes(320))
        s.flush()  # the caller stopped speaking: 3 frames go now
        s.close_gather()
        for _ in range(10):
            s.add(bytes(320))
        s.close()
        await asyncio.sleep(0)
        return p.sent

    sent = asyncio.run(scenario())
    rows = [(len(v) // 16, h["seq"], h["offset_ms"], h["final"], h["purpose"], h.get("gather")) for v, h in sent]
    g = orjson.dumps({"id": "g1", "step": "menu", "hints": ["billing"], "language": "en"})
    if transcribe:
        assert rows == [(100, b"0", b"0", b"0", b"transcribe", None),
                        (200, b"1", b"100", b"0", b"gather transcribe", g),
                        (60, b"2", b"300", b"0", b"gather transcribe", g),
                        (200, b"3", b"360", b"0", b"transcribe", None),
                        (0, b"4", b"560", b"1", b"transcribe", None)]
    else:  # only the gather's audio is streamed; the offsets still count call time
        assert rows == [(200, b"0", b"100", b"0", b"gather", g),
                        (60, b"1", b"300", b"0", b"gather", g),
                        (0, b"2", b"560", b"1", b"gather", None)]
    assert json.loads(g)["id"] == "g1"


def test_streamer_sends_nothing_for_a_call_without_purpose():
    async def scenario():
        p = FakeProducer()
        s = AudioStreamer(p, "call_a", "acct_1")
        for _ in range(30):
            s.add(bytes(320))
        s.close()
        await asyncio.sleep(0)
        return p.sent

    assert asyncio.run(scenario()) == []


def test_live_worker_skips_gather_only_chunks_and_keeps_transcribed_ones():
    live = LiveTranscription(lambda e: None, transcriber=FakeWhisper())
    pcm = silence(400) + tone(300, 2000) + silence(1000)
    jobs = []
    for i, c in enumerate(chunks(pcm)):
        jobs += live.accept(b"call_g", c, headers(i, i * 200, purpose="gather"))
        jobs += live.accept(b"call_t", c, headers(i, i * 200, purpose="gather transcribe"))
    assert live.stats["other_purpose"] == len(chunks(pcm))
    assert {j.stream.call_id for j in jobs} == {"call_t"} and any(j.final for j in jobs)
