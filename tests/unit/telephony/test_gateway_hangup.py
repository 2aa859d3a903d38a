"""A hangup instruction stops the prompt at once instead of waiting for it to end."""

from __future__ import annotations

import asyncio

from services.telephony.gateway import Gateway, LiveCall
from tests.unit.telephony.test_gateway_speech import FakeGateway, FakeSession, _dial


class PlayingSession(FakeSession):
    """Plays for an hour unless stopped."""

    def __init__(self):
        super().__init__()
        self.stopped = asyncio.Event()
        self.hung_up = asyncio.Event()

    async def play(self, pcm: bytes) -> bool:
        try:
            await asyncio.wait_for(self.stopped.wait(), 3600)
        except asyncio.TimeoutError:
            return True
        return False

    def stop_playback(self):
        self.stopped.set()

    async def hangup(self):
        self.hung_up.set()
        await super().hangup()


async def _hang_up_during_a_prompt(session: PlayingSession, load_audio, after_hangup=None) -> list[bool]:
    """Play a prompt on a gateway's call, hang up 50 ms later; the prompt.finished `interrupted` flags."""
    fake = FakeGateway()
    dial = _dial()
    call = LiveCall(fake, dial, session)
    fake.load_audio = load_audio
    gw = Gateway(carriers={})
    gw.calls[call.dial.call_id] = call
    try:
        await gw.dispatch(dial.caused("play.requested", {"audio_ref": "sha256:x.wav"}, step="play"))
        await asyncio.sleep(0.05)
        await gw.dispatch(dial.caused("hangup.requested", {"reason": "api"}, step="hangup"))
        if after_hangup is not None:
            after_hangup()
        await asyncio.wait_for(session.hung_up.wait(), 5)  # not an hour
        return [e.data["interrupted"] for e in fake.producer.events if e.type == "prompt.finished"]
    finally:
        call.close()


async def test_hangup_during_a_prompt_interrupts_it_and_ends_the_call():
    async def audio(ref):
        return b"\x00" * 320

    assert await _hang_up_during_a_prompt(PlayingSession(), audio) == [True]  # the prompt was playing


class CarrierLikeSession(PlayingSession):
    """Like a carrier: a stop before a play starts does not stop that play."""

    async def play(self, pcm: bytes) -> bool:
        self.stopped.clear()
        return await super().play(pcm)


async def test_hangup_while_the_prompt_audio_is_still_loading_keeps_it_from_starting():
    loaded = asyncio.Event()

    async def slow_audio(ref):
        await loaded.wait()  # the play instruction is taken, its audio not loaded yet
        return b"\x00" * 320

    assert await _hang_up_during_a_prompt(CarrierLikeSession(), slow_audio, after_hangup=loaded.set) == [True]
