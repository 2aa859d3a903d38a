"""Real engines: Piper (bundled en-US voice) and espeak-ng."""

import asyncio
import shutil
import threading

import numpy as np
import pytest

from services.common import audio
from services.common.media_store import LocalMediaStore
from services.tts.engines import EspeakEngine, PiperEngine
from services.tts.render import Renderer
from services.lib.voices.catalog import VOICES, get_voice

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@pytest.fixture(scope="module")
def piper():
    return PiperEngine()


def _f0(pcm: bytes, rate: int = 8000) -> float:
    """Median pitch of voiced 40 ms frames by autocorrelation (70-400 Hz)."""
    x = audio.pcm_to_array(pcm).astype(float)
    n, pitches = int(0.04 * rate), []
    for i in range(0, len(x) - n, n):
        f = x[i:i + n] - x[i:i + n].mean()
        if np.sqrt(np.mean(f ** 2)) < 500:
            continue
        ac = np.correlate(f, f, "full")[n - 1:]
        lo, hi = rate // 400, rate // 70
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            pitches.append(rate / lag)
    return float(np.median(pitches))


def test_piper_renders_docs_example_at_8k(piper):
    v = get_voice("en-US-Neural2-F")
    pcm = piper.synthesize("Hello! Your verification code is <say-as interpret-as='digits'>123456</say-as>", v)
    ms = audio.duration_ms(pcm)
    assert 2500 < ms < 6000
    assert audio.rms_dbfs(pcm) > -30  # real speech, not silence


def test_piper_speed_and_pitch(piper):
    v = get_voice("en-US-Neural2-D")
    text = "The quick brown fox jumps over the lazy dog."
    base = piper.synthesize(text, v)
    fast = piper.synthesize(text, v, speed=2.0)
    # Piper samples phoneme durations (noise_w), so lengths vary ~10% run to run.
    assert 0.35 < len(fast) / len(base) < 0.7
    high = piper.synthesize(text, v, pitch=12)
    assert 0.75 < len(high) / len(base) < 1.3  # pitch does not change tempo
    assert 1.7 < _f0(high) / _f0(base) < 2.3  # +12 semitones = one octave


def test_break_inserts_exact_silence(piper):
    v = get_voice("en-US-Neural2-D")
    paused = audio.pcm_to_array(piper.synthesize("<speak>Hello there.<break time='2s'/></speak>", v))
    trailing = len(paused) - (np.nonzero(paused)[0][-1] + 1)
    assert trailing < 0.5 * 8000  # a trailing break is trimmed (telephony adds its own)
    two = piper.synthesize("<speak>Hello.<break time='2s'/>Bye.</speak>", v)
    x = audio.pcm_to_array(two)
    run = max(len(r) for r in np.split(x, np.where(np.abs(x) > 50)[0]) if len(r))
    assert run >= 2000 * 8 * 0.95  # a ~2 s gap of silence, in samples


def test_all_espeak_voices_exist_and_honour_the_female_variant():
    e = EspeakEngine()
    for lang in sorted({v.language for v in VOICES.values() if v.engine == "espeak"}):
        female, male = get_voice(f"{lang}-Standard-A"), get_voice(f"{lang}-Standard-B")
        a, b = e.synthesize("1 2 3 hello", female), e.synthesize("1 2 3 hello", male)
        assert audio.duration_ms(b) > 300, lang
        assert a != b, f"{lang}: variant ignored"


@pytest.mark.parametrize("vid,text", [
    ("de-DE-Standard-A", "Guten Tag, wie geht es Ihnen?"),
    ("es-ES-Neural2-A", "Hola, su código es <say-as interpret-as='digits'>42</say-as>"),
    ("ja-JP-Standard-B", "こんにちは"),
])
def test_espeak_languages(vid, text):
    pcm = EspeakEngine().synthesize(text, get_voice(vid))
    assert audio.duration_ms(pcm) > 500 and audio.rms_dbfs(pcm) > -35


def test_espeak_speed_and_female_variant():
    e, text = EspeakEngine(), "This is a test of the speaking rate."
    slow = e.synthesize(text, get_voice("en-GB-Standard-B"), speed=0.5)
    fast = e.synthesize(text, get_voice("en-GB-Standard-B"), speed=2.0)
    assert len(slow) > 2.5 * len(fast)
    female = e.synthesize(text, get_voice("en-GB-Standard-A"))
    assert _f0(female) > 1.3 * _f0(e.synthesize(text, get_voice("en-GB-Standard-B")))


@pytest.mark.asyncio
async def test_render_cache_and_off_loop(tmp_path, monkeypatch):
    r = Renderer(LocalMediaStore(tmp_path))
    tts = {"text": "Please enter your four digit PIN.", "voice": "en-US-Neural2-F", "speed": 1.0, "pitch": 0}
    loop, loop_thread = asyncio.get_running_loop(), threading.current_thread()
    piper, synth_threads = r.engines["piper"], []
    real = piper.synthesize

    def synthesize(*args, **kwargs):
        # Synthesis waits until the loop has run a callback: off the loop that is at once,
        # on the loop it never happens (the wait would block the loop itself).
        synth_threads.append(threading.current_thread())
        loop_ran = threading.Event()
        loop.call_soon_threadsafe(loop_ran.set)
        assert loop_ran.wait(60), "the event loop did not run while Piper synthesised"
        return real(*args, **kwargs)

    monkeypatch.setattr(piper, "synthesize", synthesize)
    first, twin = await asyncio.gather(r.render(tts), r.render(tts))
    assert synth_threads and loop_thread not in synth_threads  # the loop kept running while Piper synthesised
    assert first.cache_hit is False and twin.cache_hit is True and twin.audio_ref == first.audio_ref
    again = await r.render(tts)
    assert again.cache_hit and again.audio_ref == first.audio_ref and again.duration_ms == first.duration_ms
    other = await r.render({**tts, "speed": 1.25})
    assert other.audio_ref != first.audio_ref and not other.cache_hit


def test_lang_switch_uses_other_voice(tmp_path):
    r = Renderer(LocalMediaStore(tmp_path))
    mixed = r.synthesize("Hello <lang xml:lang='fr-FR'>bonjour</lang>", get_voice("en-US-Neural2-D"))
    assert audio.duration_ms(mixed) > 800
