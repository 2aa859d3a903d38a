"""services.common.audio: G.711 bit-exactness, resampling, WAV, mixing."""

import warnings

import numpy as np
import pytest

from services.common import audio


def _peak_hz(pcm: bytes, rate: int = 8000) -> float:
    x = audio.pcm_to_array(pcm).astype(float)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


@pytest.fixture(scope="module")
def audioop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop as mod  # reference implementation, present up to Python 3.12
    return mod


ALL_PCM = np.arange(-32768, 32768, dtype="<i2").tobytes()
ALL_BYTES = bytes(range(256))


def test_ulaw_matches_reference_for_every_sample(audioop):
    assert audio.ulaw_encode(ALL_PCM) == audioop.lin2ulaw(ALL_PCM, 2)
    assert audio.ulaw_decode(ALL_BYTES) == audioop.ulaw2lin(ALL_BYTES, 2)


def test_alaw_matches_reference_for_every_sample(audioop):
    assert audio.alaw_encode(ALL_PCM) == audioop.lin2alaw(ALL_PCM, 2)
    assert audio.alaw_decode(ALL_BYTES) == audioop.alaw2lin(ALL_BYTES, 2)


def test_g711_round_trip_keeps_a_tone():
    pcm = audio.tone(1000, 200)
    for enc, dec in ((audio.ulaw_encode, audio.ulaw_decode), (audio.alaw_encode, audio.alaw_decode)):
        coded = enc(pcm)
        assert len(coded) == len(pcm) // 2
        back = dec(coded)
        err = audio.pcm_to_array(back).astype(float) - audio.pcm_to_array(pcm)
        snr = 10 * np.log10(np.mean(audio.pcm_to_array(pcm).astype(float) ** 2) / np.mean(err**2))
        assert snr > 30  # G.711 gives ~38 dB SNR on a loud tone


def test_resample_44k_stereo_to_8k_mono_keeps_frequency_and_length():
    t = np.arange(44100) / 44100
    left = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    stereo = np.column_stack((left, left)).reshape(-1).tobytes()
    out = audio.resample_pcm(stereo, 44100, channels=2)
    assert audio.duration_ms(out) == 1000
    assert abs(_peak_hz(out) - 440) < 3
    assert abs(audio.rms_dbfs(out) - audio.rms_dbfs(left.tobytes())) < 0.5


def test_resample_removes_content_above_nyquist():
    # A 6 kHz tone cannot exist at 8 kHz; a naive decimator would alias it to 2 kHz.
    t = np.arange(48000) / 48000
    pcm = (0.5 * np.sin(2 * np.pi * 6000 * t) * 32767).astype("<i2").tobytes()
    assert audio.rms_dbfs(audio.resample_pcm(pcm, 48000)) < -50


def test_wav_round_trip_and_other_widths():
    pcm = audio.tone(300, 500)
    data = audio.write_wav(pcm)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    back, rate, ch = audio.read_wav(data)
    assert (back, rate, ch) == (pcm, 8000, 1)

    import io
    import wave

    x = audio.pcm_to_array(pcm).astype(np.int32)
    for width, raw in (
        (1, ((x >> 8) + 128).astype(np.uint8).tobytes()),
        (4, (x << 16).astype("<i4").tobytes()),
    ):
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1), w.setsampwidth(width), w.setframerate(8000), w.writeframes(raw)
        got, _, _ = audio.read_wav(buf.getvalue())
        assert np.max(np.abs(audio.pcm_to_array(got).astype(int) - x)) <= (256 if width == 1 else 0)


def test_mix_sums_pads_and_clips():
    a = np.array([1000, 30000, -30000], dtype="<i2").tobytes()
    b = np.array([500, 30000], dtype="<i2").tobytes()
    assert audio.pcm_to_array(audio.mix(a, b)).tolist() == [1500, 32767, -30000]


def test_interleave_and_split_are_inverse():
    left, right = audio.tone(440, 100), audio.tone(880, 50)
    stereo = audio.interleave(left, right)
    assert len(stereo) == 2 * len(left)
    l2, r2 = audio.split_stereo(stereo)
    assert l2 == left
    assert r2[: len(right)] == right and set(r2[len(right):]) == {0}
    assert audio.duration_ms(stereo, channels=2) == 100


def test_gain_and_silence():
    pcm = audio.tone(440, 100, amplitude=0.25)
    assert abs(audio.rms_dbfs(audio.apply_gain_db(pcm, 6)) - audio.rms_dbfs(pcm) - 6) < 0.1
    assert audio.pcm_to_array(audio.apply_gain_db(audio.tone(440, 10, amplitude=0.9), 20)).max() == 32767
    assert audio.silence(250) == bytes(4000)
    assert audio.rms_dbfs(audio.silence(10)) == float("-inf")


@pytest.mark.asyncio
async def test_run_blocking_runs_in_media_pool():
    import threading

    name = await audio.run_blocking(lambda: threading.current_thread().name)
    assert name.startswith("media")
