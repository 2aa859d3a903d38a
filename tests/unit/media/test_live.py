"""Real-time transcription without Kafka or whisper: segmentation, queueing, events."""

from __future__ import annotations

import asyncio

import pytest

from events import DecodeError, decode_typed, encode
from services.common.audio import silence, tone
from services.transcription.engine import Transcript
from services.transcription.live import CallStream, LiveConfig, LiveTranscription

CHUNK = 3200  # 200 ms of 8 kHz s16le



@pytest.fixture(autouse=True)
def _energy_vad(monkeypatch):
    # These tests are about segmentation (partials, finals, order, bounds) on synthetic
    # tones, which only the energy VAD calls speech; the Silero VAD has its own tests.
    monkeypatch.setenv("CANARY_VAD", "energy")


def chunks(pcm: bytes):
    return [pcm[i:i + CHUNK] for i in range(0, len(pcm), CHUNK)]


def headers(seq: int, offset_ms: int, final: bool = False, account: str = "acct_1"):
    return [("account_id", account.encode()), ("channel", b"callee"), ("seq", str(seq).encode()),
            ("offset_ms", str(offset_ms).encode()), ("final", b"1" if final else b"0")]


class FakeWhisper:
    """Says how much audio it heard, so tests can tell partials apart."""

    def __init__(self, delay: float = 0.0):
        self.calls: list[int] = []
        self.delay = delay

    def transcribe(self, pcm: bytes, language=None) -> Transcript:
        import time

        time.sleep(self.delay)
        self.calls.append(len(pcm) // 16)
        return Transcript(text=f"heard {len(pcm) // 16} ms", confidence=0.9, language="en")


def feed_all(live: LiveTranscription, pcm: bytes, call="call_a", final=True, seq0=0):
    jobs = []
    parts = chunks(pcm)
    for i, c in enumerate(parts):
        jobs += live.accept(call.encode(), c, headers(seq0 + i, (seq0 + i) * 200, final and i == len(parts) - 1))
    return jobs


def test_partials_every_second_of_speech_then_a_final():
    s = CallStream("call_a", "acct_1", "callee")
    jobs = []
    pcm = silence(1000) + tone(300, 2600) + silence(1400)
    for i, c in enumerate(chunks(pcm)):
        jobs += s.feed(c, i * 200, i)
    kinds = [(j.utterance, j.n) for j in jobs]
    assert kinds == [(0, 0), (0, 1), (0, -1)]
    first, second, final = jobs
    # speech starts at 1000 ms; the endpointer keeps up to 200 ms of lead-in
    assert 800 <= first.offset_ms <= 1000 and first.offset_ms == final.offset_ms
    # first partial after detection (60 ms) + partial_first_ms of speech, within a 200 ms chunk
    due = 1000 + 60 + LiveConfig().partial_first_ms
    assert first.seq * 200 <= due <= (first.seq + 1) * 200
    assert len(first.pcm) < len(second.pcm) < len(final.pcm)
    assert 2600 <= len(final.pcm) // 16 <= 2600 + 200 + 800  # speech + lead-in + end silence
    assert len({j.event_id() for j in jobs}) == 3
    # the same stream read again gives the same ids (a consumer dedupes the replay)
    s2 = CallStream("call_a", "acct_1", "callee")
    again = [j for i, c in enumerate(chunks(pcm)) for j in s2.feed(c, i * 200, i)]
    assert [j.event_id() for j in again] == [j.event_id() for j in jobs]


def test_two_utterances_are_numbered_and_redelivered_chunks_ignored():
    s = CallStream("call_a", "acct_1", "callee")
    pcm = tone(300, 1400) + silence(1200) + tone(300, 1400) + silence(1200)
    jobs = []
    for i, c in enumerate(chunks(pcm)):
        jobs += s.feed(c, i * 200, i)
        assert s.feed(c, i * 200, i) == []  # a duplicate seq changes nothing
    finals = [j for j in jobs if j.final]
    assert [j.utterance for j in finals] == [0, 1]
    assert finals[1].offset_ms >= 2400


def test_final_chunk_flushes_the_utterance_and_forgets_the_call():
    live = LiveTranscription(emit=None, transcriber=FakeWhisper())
    jobs = feed_all(live, silence(400) + tone(300, 1600))  # hangs up mid-sentence
    assert [j.final for j in jobs] == [False, True]
    assert live.calls == {}


def test_bounded_calls_and_idle_eviction():
    live = LiveTranscription(emit=None, transcriber=FakeWhisper(), cfg=LiveConfig(max_calls=3, idle_s=5))
    for n in range(5):
        live.accept(f"call_{n}".encode(), tone(300, 200), headers(0, 0), now=100.0 + n)
    assert [k[0] for k in live.calls] == ["call_2", "call_3", "call_4"] and live.stats["evicted"] == 2
    # call_4 keeps talking; the others go quiet
    for i in range(1, 6):
        live.accept(b"call_4", tone(300, 200), headers(i, i * 200), now=104.0 + i)
    jobs = live.evict_idle(now=110.0)
    assert [k[0] for k in live.calls] == ["call_4"]
    assert {j.stream.call_id for j in jobs} == {"call_2", "call_3"} and all(j.final for j in jobs)


def test_records_without_account_or_too_old_are_skipped():
    import time

    live = LiveTranscription(emit=None, transcriber=FakeWhisper(), cfg=LiveConfig(max_lag_s=30))
    assert live.accept(b"call_a", tone(300, 200), [("seq", b"0")]) == []
    old = int(time.time() * 1000) - 60_000
    assert live.accept(b"call_a", tone(300, 200), headers(0, 0), timestamp_ms=old) == []
    assert live.calls == {} and live.stats["skipped"] == 1 and live.stats["stale_chunks"] == 1


@pytest.mark.asyncio
async def test_events_carry_call_account_channel_and_validate():
    out = []

    async def emit(env):
        out.append(env)

    live = LiveTranscription(emit=emit, transcriber=FakeWhisper())
    worker = asyncio.create_task(live.work())
    parts = chunks(silence(400) + tone(300, 1500) + silence(1000))
    for i, c in enumerate(parts):  # whisper keeps up: each result is out before the next chunk
        for job in live.accept(b"call_x", c, headers(i, i * 200, i == len(parts) - 1)):
            await live.submit(job)
        await asyncio.wait_for(live.queue.join(), 5)
    worker.cancel()
    assert [e.data["final"] for e in out] == [False, True]
    for e in out:
        assert e.type == "transcription.partial" and e.call_id == "call_x" and e.account_id == "acct_1"
        assert e.data["channel"] == "callee" and e.data["text"].startswith("heard")
        assert 200 <= e.data["offset_ms"] <= 400 and e.data["utterance"] == 0
        decoded = decode_typed(encode(e))
        assert not isinstance(decoded, DecodeError), decoded
    assert out[0].data["duration_ms"] < out[1].data["duration_ms"]


@pytest.mark.asyncio
async def test_slow_whisper_skips_stale_partials_and_drops_overflow():
    out = []

    async def emit(env):
        out.append(env)

    whisper = FakeWhisper(delay=0.05)
    live = LiveTranscription(emit=emit, transcriber=whisper, cfg=LiveConfig(queue_size=3, partial_first_ms=1000))
    # 6 s of speech arrive in one batch, faster than whisper: 5 partials queued at once
    jobs = feed_all(live, tone(300, 6000), final=False)
    assert [j.n for j in jobs] == [0, 1, 2, 3, 4]
    worker = asyncio.create_task(live.work())
    for j in jobs:
        await live.submit(j)  # the queue holds 3: partials 3 and 4 are dropped
    assert live.stats["dropped_partials"] == 2 and live.queue.full()
    await asyncio.wait_for(live.queue.join(), 5)
    # partial 0 leads (nothing out yet: never stale); partial 1 was superseded by
    # partial 2 (queued later) before whisper ran
    assert [e.data["final"] for e in out] == [False, False] and live.stats["stale_partials"] == 1
    assert [e.data["duration_ms"] for e in out] == sorted(e.data["duration_ms"] for e in out)
    # the end of the utterance: a final, which is never dropped (it waits for room)
    for _ in range(3):
        live.queue.put_nowait(jobs[0])  # stale filler: the queue is full again
    ends = feed_all(live, silence(1000), seq0=30)
    assert [j.final for j in ends] == [True]
    await live.submit(ends[0])
    await asyncio.wait_for(live.queue.join(), 5)
    worker.cancel()
    assert [e.data["final"] for e in out] == [False, False, True]
    assert out[0].data["duration_ms"] < out[1].data["duration_ms"] < out[2].data["duration_ms"]
    assert len(whisper.calls) == 3


@pytest.mark.asyncio
async def test_a_final_that_overtakes_the_first_partial_never_silences_it():
    """A machine too slow for real time still shows live text before the speaker stops.

    Whisper here is slower than the speech: every job is queued before the first one
    finishes, and the final is cut while the first partial is still in whisper."""
    out = []

    async def emit(env):
        out.append(env)

    whisper = FakeWhisper(delay=0.2)
    live = LiveTranscription(emit=emit, transcriber=whisper, cfg=LiveConfig(queue_size=2))
    worker = asyncio.create_task(live.work())
    jobs = feed_all(live, tone(300, 1000) + silence(1000) + tone(300, 3000) + silence(1000))
    # two utterances, each with a first partial; the second also has follow-ups
    assert [(j.utterance, j.n) for j in jobs] == [(0, 0), (0, -1), (1, 0), (1, 1), (1, 2), (1, -1)]
    for j in jobs:
        await live.submit(j)  # queue of 2: first partials and finals wait, follow-ups may drop
    await asyncio.wait_for(live.queue.join(), 10)
    worker.cancel()
    got = [(e.data["utterance"], e.data["final"]) for e in out]
    for utt in (0, 1):
        mine = [final for u, final in got if u == utt]
        assert mine[0] is False and mine[-1] is True, got  # a partial first, the final last
    assert live.stats["dropped_finals"] == 0


@pytest.mark.asyncio
async def test_a_full_queue_drops_follow_up_partials_but_not_first_ones():
    out = []

    async def emit(env):
        out.append(env)

    live = LiveTranscription(emit=emit, transcriber=FakeWhisper(), cfg=LiveConfig(queue_size=1, job_timeout_s=0.2))
    a = feed_all(live, tone(300, 2500), call="call_a", final=False)
    b = feed_all(live, tone(300, 1500), call="call_b", final=False)
    assert [j.n for j in a] == [0, 1] and [j.n for j in b] == [0]
    await live.submit(a[0])
    await live.submit(a[1])  # follow-up, queue full: dropped at once
    assert live.stats["dropped_partials"] == 1
    # call_b's first partial waits for room (times out here since no worker runs)
    await live.submit(b[0])
    assert live.stats["dropped_partials"] == 2 and live.queue.qsize() == 1
    worker = asyncio.create_task(live.work())
    await live.submit(b[0])  # with a worker draining, it gets in
    await asyncio.wait_for(live.queue.join(), 5)
    worker.cancel()
    assert [(e.call_id, e.data["final"]) for e in out] == [("call_a", False), ("call_b", False)]


@pytest.mark.asyncio
async def test_whisper_failure_and_timeout_cost_one_result_only():
    out = []

    async def emit(env):
        out.append(env)

    class Broken:
        def transcribe(self, pcm, language=None):
            raise RuntimeError("model exploded")

    live = LiveTranscription(emit=emit, transcriber=Broken())
    parts = chunks(tone(300, 1500) + silence(1000))
    for i, c in enumerate(parts):
        for j in live.accept(b"call_a", c, headers(i, i * 200, i == len(parts) - 1)):
            assert await live.process(j) is None
    assert out == [] and live.stats["failed"] == 2  # the partial and the final

    slow = LiveTranscription(emit=emit, transcriber=FakeWhisper(delay=0.5), cfg=LiveConfig(job_timeout_s=0.1))
    jobs = feed_all(slow, tone(300, 1500) + silence(1000))
    assert await slow.process(jobs[-1]) is None and slow.stats["failed"] == 1
