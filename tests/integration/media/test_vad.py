"""The Silero VAD endpointer on real speech (Piper) and on noise: what the energy one gets wrong."""

from __future__ import annotations

import numpy as np
import pytest

from services.common import audio
from services.lib.speech import Endpointer, SileroEndpointer, make_endpointer

pytestmark = pytest.mark.integration


def frames(pcm: bytes) -> list[bytes]:
    return [pcm[i:i + 320] for i in range(0, len(pcm) - 319, 320)]


def said(text: str) -> bytes:
    from services.tts.render import Renderer

    r = Renderer()
    pcm, _, _ = audio.read_wav(r.store.get(r.render_sync({"text": text, "voice": "en-US-Neural2-F"}).audio_ref))
    return audio.ulaw_decode(audio.ulaw_encode(pcm))  # as a phone line carries it


def run(ep, pcm: bytes) -> list[tuple[str, int]]:
    return [(e, i * 20) for i, f in enumerate(frames(pcm)) if (e := ep.feed(f))]


def test_an_utterance_between_silences_is_found_once_start_to_end():
    speech = said("I would like to talk to support, please.")
    events = run(SileroEndpointer(), audio.silence(600) + speech + audio.silence(1500))
    (start, t0), (end, t1) = events
    assert (start, end) == ("started", "ended")
    assert 500 <= t0 <= 900  # the speech starts at 600 ms
    assert 600 + len(speech) // 16 <= t1 <= 600 + len(speech) // 16 + 800 + 300  # its end + the end silence


def test_loud_noise_is_not_speech_for_silero_but_is_for_the_energy_threshold():
    noise = np.random.default_rng(7).normal(0, 2000, 8000 * 3).astype("<i2").tobytes()
    assert run(SileroEndpointer(), noise) == []
    assert run(Endpointer(), noise)[0][0] == "started"  # why the gather and live workers use Silero


def test_the_setting_picks_the_endpointer():
    assert isinstance(make_endpointer("silero"), SileroEndpointer)
    assert isinstance(make_endpointer("energy"), Endpointer)
