"""A media stream on a SIP call: SIPp answers (the interop scenario), the test's RTP listener
is the far end's media. The app's audio goes out as PCMU RTP, paced at 20 ms, a mark comes
back after it, and the app closing the stream ends the call with our BYE."""

from __future__ import annotations

import asyncio

import pytest

from services.common.audio import ulaw_encode
from services.lib import trunks
from services.telephony.carrier import FRAME_BYTES
from tests.e2e.conftest import CORE, _voice_stack
from tests.interop.sip.conftest import lateness_ms, rtp_listener, sipp  # noqa: F401 (fixtures)
from tests.streams_app import StreamApp, as_played, mark_msg, media_msg, tone

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def voice(request, stack, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CANARY_SIP_PORT", "0")
        mp.setenv("CANARY_SIP_BIND", "127.0.0.1")
        mp.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")  # the trunk (SIPp) and the app are on loopback
        async for vs in _voice_stack(request, stack, tmp_path_factory, CORE):
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
