"""A recorded call's audio goes to disk while the call runs, not into the gateway's memory.

Ten minutes of both directions (19.2 MB of PCM) are pushed as fast as the writer takes
them through a real sandbox session (and a real SIP media session) into the gateway's
recorder; the memory the recording path allocates (tracemalloc) stays at a few MB, and
the WAVs put into the media store are byte for byte what was fed, under the refs the
in-memory path gave.
"""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc

from events import new_envelope
from services.common import audio
from services.common.media_store import LocalMediaStore, make_ref, set_media_store
from services.common.media_store_spool import (BYTES_PER_S, RecordingSpoolError, SpoolRecorder, wav_header)
from services.telephony.carrier import FRAME_BYTES, DialRequest
from services.telephony.gateway import LiveCall
from services.telephony.sandbox import SandboxSession
from services.telephony.sip.rtp import RtpPacket
from tests.unit.sip.test_media_session import frame, make_session
from tests.unit.telephony.test_gateway_speech import FakeGateway

MINUTES = 10
FRAMES_PER_S = 50
MAX_GROWTH = 3 * 1024 * 1024  # bytes allocated by the recording path at its peak


class IdleClock:
    """Stands in for the sandbox's FrameClock: the test moves the frames itself."""

    def add(self, s):
        pass

    def discard(self, s):
        pass


def second_of(i: int, leg: int) -> bytes:
    """One second of distinct audio for second ``i`` of leg 0 (callee) or 1 (ours)."""
    return bytes([(i * 7 + leg * 101) % 256, (i + leg) % 256]) * (BYTES_PER_S // 2)


async def _wait(pred, what: str):
    for _ in range(2000):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_wav_header_is_what_the_wave_module_writes():
    pcm = second_of(3, 0)[:1234]
    assert wav_header(len(pcm)) + pcm == audio.write_wav(pcm)
    assert wav_header(0) == audio.write_wav(b"")


async def test_ten_minutes_through_the_sandbox_session_cost_the_gateway_a_few_mb(tmp_path):
    store = LocalMediaStore(tmp_path / "media")
    set_media_store(store)
    gw = FakeGateway()
    dial = new_envelope("dial.requested", "call_long", "acct_1", {
        "to": "+15551234567", "from": "+15559876543", "record": {"channels": "dual"}})
    req = DialRequest(call_id="call_long", account_id="acct_1", to="+15551234567", from_="+15559876543")
    session = SandboxSession(req, None, 1000.0, None, IdleClock())
    call = LiveCall(gw, dial, session)
    try:
        await _wait(lambda: call.recorder is not None, "the answer to start the recording")
        hashes = [hashlib.sha256(wav_header(MINUTES * 60 * BYTES_PER_S)) for _ in range(2)]
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            for i in range(MINUTES * 60):
                callee, ours = second_of(i, 0), second_of(i, 1)
                hashes[0].update(callee)
                hashes[1].update(ours)
                session._callee_audio.extend(callee[j:j + FRAME_BYTES] for j in range(0, len(callee), FRAME_BYTES))
                session._play.extend(ours[j:j + FRAME_BYTES] for j in range(0, len(ours), FRAME_BYTES))
                session.tick(FRAMES_PER_S)
                del callee, ours
                await asyncio.sleep(0)
                if call.recorder.backlog_bytes > 10 * BYTES_PER_S:  # as fast as the writer goes
                    await call.recorder.drained()
            await session.hangup()
            await _wait(lambda: any(e.type == "call.completed" for e in gw.producer.events), "the call's end")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak - base < MAX_GROWTH, f"recording path peaked at {(peak - base) / 1e6:.1f} MB"
        captured = next(e for e in gw.producer.events if e.type == "recording.captured")
        assert captured.data["duration_ms"] == MINUTES * 60_000
        assert captured.data["channels"] == "dual"
        assert captured.data["callee_ref"] == f"sha256:{hashes[0].hexdigest()}.wav"
        assert captured.data["agent_ref"] == f"sha256:{hashes[1].hexdigest()}.wav"
        for ref in (captured.data["callee_ref"], captured.data["agent_ref"]):
            assert store.path(ref).stat().st_size == 44 + MINUTES * 60 * BYTES_PER_S
        assert list(store.spool_dir().iterdir()) == []  # moved into the store, nothing left behind
    finally:
        call.close()
        set_media_store(None)


async def test_sip_media_session_recording_spooled_equals_the_in_memory_one(tmp_path):
    """The SIP recorder path: the same frames give the same WAVs (and refs) as before."""
    store = LocalMediaStore(tmp_path / "media")
    results = []
    for spooled in (False, True):
        s, sink, _ = await make_session()
        try:
            rec = SpoolRecorder(store.spool_dir()) if spooled else None
            s.start_recording(rec)
            for seq in range(1, 40):
                s._on_rtp(RtpPacket(0, seq, seq * 160, 9, frame(100 * seq)).pack(), ("127.0.0.1", 1))
            play = asyncio.ensure_future(s.play(b"\x01\x00" * 160 * 5))
            await asyncio.sleep(0)
            for _ in range(60):
                s.tick()
            await play
            for _ in range(MINUTES * 60):  # ten minutes more: a tick, then the clock stalls for 49 frames
                s.tick()
                s.skip(FRAMES_PER_S - 1)
                await asyncio.sleep(0)
                if rec is not None and rec.backlog_bytes > 10 * BYTES_PER_S:
                    await rec.drained()
            callee, ours = s.stop_recording()
            if spooled:
                assert callee == ours == b""
                a, b = await rec.finish()
                assert a.duration_ms == b.duration_ms == 1200 + MINUTES * 60_000
                results.append(tuple(store.put_file(x.path, "wav") for x in (a, b)))
            else:
                results.append((make_ref(audio.write_wav(callee), "wav"), make_ref(audio.write_wav(ours), "wav")))
        finally:
            s.close()
            sink.close()
    assert results[0] == results[1]


async def test_a_writer_that_falls_too_far_behind_fails_the_recording_instead_of_growing(tmp_path):
    rec = SpoolRecorder(tmp_path, max_backlog_s=5)
    for i in range(10):  # ten seconds handed over without ever yielding to the writer's callbacks
        rec.write(second_of(i, 0), second_of(i, 1))
    assert rec.backlog_bytes <= 5 * BYTES_PER_S
    try:
        await rec.finish()
    except RecordingSpoolError as exc:
        assert "fell behind" in str(exc)
    else:
        raise AssertionError("the recording should have failed")
    assert list(tmp_path.iterdir()) == []  # its files are removed


async def test_a_call_closed_mid_recording_leaves_no_spool_files(tmp_path):
    store = LocalMediaStore(tmp_path / "media")
    set_media_store(store)
    gw = FakeGateway()
    dial = new_envelope("dial.requested", "call_gone", "acct_1", {
        "to": "+15551234567", "from": "+15559876543", "record": {"channels": "mono"}})
    session = SandboxSession(DialRequest(call_id="call_gone", to="+15551234567", from_="+15559876543"), None,
                             1000.0, None, IdleClock())
    call = LiveCall(gw, dial, session)
    try:
        await _wait(lambda: call.recorder is not None, "the answer to start the recording")
        for _ in range(3):
            session.tick(FRAMES_PER_S)
        await call.recorder.drained()
        assert len(list(store.spool_dir().iterdir())) == 2  # on disk while the call runs
        recorder = call.recorder
        call.close()  # the gateway lets the call go (shutting down) before it ended
        await _wait(lambda: recorder.closed and not list(store.spool_dir().iterdir()), "the spool files to go")
    finally:
        set_media_store(None)
