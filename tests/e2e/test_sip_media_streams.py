"""A media stream on a SIP call: SIPp answers (the interop scenario), the test's RTP listener
is the far end's media. The app's audio goes out as PCMU RTP, paced at 20 ms, a mark comes
back after it, and the app closing the stream ends the call with our BYE."""

from __future__ import annotations

import asyncio

import pytest

from services.common.audio import ulaw_encode
from services.lib import trunks
from services.telephony.carrier import FRAME_BYTES
from tests.e2e.conftest import sip_voice_stack
from tests.interop.sip.conftest import (SCENARIOS, lateness_ms, rtp_listener, sipp,  # noqa: F401 (fixtures)
                                        write_pcmu_pcap)
from tests.streams_app import StreamApp, as_played, mark_msg, media_msg, tone

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def voice(request, stack, tmp_path_factory):
    async for vs in sip_voice_stack(request, stack, tmp_path_factory):
        yield vs


@pytest.fixture(scope="module")
async def kprod(stack):
    from services.common.kafka import make_producer

    p = make_producer()
    await p.start()
    yield p
    await p.stop()


async def test_sip_call_plays_the_apps_audio_over_rtp(voice, kprod, sipp, rtp_listener):
    uas = sipp("uas_answer.xml", sets={"rtp_port": str(rtp_listener.port)})
    await trunks.set_trunk(voice.db, voice.account, host="127.0.0.1", port=uas.port, password=None)
    hello = tone(1000, 1000)

    async def bot(conn):
        await conn.send(media_msg(conn.sid, hello))
        await conn.send(mark_msg(conn.sid, "hello"))
        await conn.wait_for(lambda m: m["event"] == "mark", timeout=10)
        await asyncio.sleep(0.2)
        await conn.ws.close(1000, "done")

    async with StreamApp(bot) as app:
        cid = await voice.place(kprod, carrier="sip", tts=None,
                                stream={"url": app.url, "track": "both", "bidirectional": True})
        end = await voice.wait(cid, "terminal", timeout=60)
    assert end.type == "call.completed", voice.types(cid)
    assert uas.wait() == 0, uas.errors()  # our BYE once the app closed the stream
    conn = app.conns[0]
    assert conn.events()[:2] == ["connected", "start"] and conn.start["callSid"] == cid
    assert len(conn.media("inbound")) > 25  # the far end's side (silence: SIPp sends no RTP here)
    frame = as_played(hello[:FRAME_BYTES])
    assert sum(1 for f in conn.media("outbound") if f == frame) == 50  # our RTP side, on the outbound track
    wire = ulaw_encode(frame)
    toned = [r for r in rtp_listener.packets if r.pkt.payload_type == 0 and r.pkt.payload == wire]
    assert len(toned) == 50  # the whole second, as PCMU, to the far end
    late = lateness_ms(toned)
    assert max(abs(x) for x in late) < 40, late  # paced at real time, not sent in a burst


async def test_the_callees_rtp_reaches_the_app_frame_for_frame(voice, kprod, sipp, tmp_path):
    """SIPp (the callee) sends a second of noise as PCMU RTP; the app hears every one of its 50
    frames, in order, byte for byte, on the inbound track with contiguous chunks."""
    import random
    from array import array

    from services.common import audio

    rng = random.Random(7)  # noise: no two frames alike, so a frame lost or doubled shows
    hello = array("h", [rng.randint(-6000, 6000) for _ in range(8000)]).tobytes()
    # A long quiet lead-in: the stream opens at answer, and frames before `start` are not the
    # app's to hear (as with Twilio); SIPp starts its replay at our ACK.
    write_pcmu_pcap(tmp_path / "hello.pcap", audio.silence(2000) + hello + audio.silence(600))
    scenario = tmp_path / "uas_hello.xml"
    scenario.write_text((SCENARIOS / "uas_dtmf.xml").read_text().replace("dtmf.pcap", "hello.pcap"))
    uas = sipp(str(scenario))
    await trunks.set_trunk(voice.db, voice.account, host="127.0.0.1", port=uas.port, password=None)
    want = [as_played(hello[i:i + FRAME_BYTES]) for i in range(0, len(hello), FRAME_BYTES)]

    async def app(conn):
        # Hang up (close the stream) once the noise's last frame and a little silence arrived.
        await conn.wait_for(lambda m: m["event"] == "media" and conn.media("inbound")[-1:] == want[-1:], timeout=30)
        await asyncio.sleep(0.2)
        await conn.ws.close(1000, "heard it")

    async with StreamApp(app) as stream_app:
        cid = await voice.place(kprod, carrier="sip", tts=None, stream={"url": stream_app.url, "bidirectional": True})
        end = await voice.wait(cid, "terminal", timeout=60)
    assert end.type == "call.completed", voice.types(cid)
    assert uas.wait() == 0, uas.errors()
    conn = stream_app.conns[0]
    heard = conn.media("inbound")
    first = heard.index(want[0])
    assert heard[first:first + len(want)] == want  # every frame, in order, none doubled or lost
    media = [m for _, m in conn.messages if m["event"] == "media"]
    chunks = [int(m["media"]["chunk"]) for m in media]
    assert chunks == list(range(1, len(media) + 1))
    stamps = [int(m["media"]["timestamp"]) for m in media]
    assert stamps == [20 * i for i in range(len(media))]


async def test_a_stream_on_a_call_to_baresip_both_ways(voice, kprod, tmp_path):
    """baresip (a real softphone) is the callee and plays its tones: the app must hear them on
    the inbound track; the app answers with a 1 kHz tone, which baresip must have received (its
    sndfile dump of what it decoded)."""
    import wave

    import numpy as np

    from tests.interop.sip.baresip import start_baresip

    peer = start_baresip(tmp_path, user="+15551234567")  # the number voice.place calls
    await trunks.set_trunk(voice.db, voice.account, host="127.0.0.1", port=peer.trunk.port, password=None)
    reply = tone(1000, 2000)

    def loud(pcm: bytes) -> bool:
        return float(np.abs(np.frombuffer(pcm, "<i2").astype(float)).mean()) > 500

    async def bot(conn):
        await conn.wait_for(lambda m: m["event"] == "media" and sum(map(loud, conn.media("inbound"))) >= 50,
                            timeout=30)
        await conn.send(media_msg(conn.sid, reply))
        await conn.send(mark_msg(conn.sid, "reply"))
        await conn.wait_for(lambda m: m["event"] == "mark", timeout=15)
        await asyncio.sleep(0.3)
        await conn.ws.close(1000, "done")

    try:
        async with StreamApp(bot) as app:
            cid = await voice.place(kprod, carrier="sip", tts=None,
                                    stream={"url": app.url, "track": "both", "bidirectional": True})
            end = await voice.wait(cid, "terminal", timeout=90)
    finally:
        peer.stop()
    assert end.type == "call.completed", voice.types(cid)
    assert "stream.started" in voice.types(cid) and "stream.stopped" in voice.types(cid)
    conn = app.conns[0]
    assert sum(map(loud, conn.media("inbound"))) >= 50  # baresip's tones reached the app

    [heard] = peer.heard()
    with wave.open(str(heard)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(float)
        rate = w.getframerate()
    n = rate // 50
    frames = pcm[: len(pcm) // n * n].reshape(-1, n)
    spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    k = round(1000 * n / rate)
    share = spec[:, k - 1:k + 2].sum(axis=1) / np.maximum(spec.sum(axis=1), 1.0)
    assert (share > 0.8).sum() >= 50, (share > 0.8).sum()  # >= 1 s of the app's 2 s tone, heard by baresip
