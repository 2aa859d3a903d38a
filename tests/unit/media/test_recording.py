"""services.recording.encode: WAV + MP3, mono/dual, decoded back and checked."""

import hashlib
import io

import av
import numpy as np
import pytest

from services.common import audio
from services.common.media_store import LocalMediaStore
from services.recording.encode import encode_recording, process_recording


def _decode_mp3(data: bytes) -> tuple[np.ndarray, int, int]:
    """Decode with FFmpeg (PyAV): (samples [frames, channels] float, rate, channels)."""
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.audio[0]
        frames = [f.to_ndarray() for f in c.decode(s)]
        rate, ch = s.rate, s.channels
    x = np.concatenate(frames, axis=1)  # planar: [channels, samples]
    return x.T, rate, ch


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


CALLEE = audio.tone(440, 3000)
AGENT = audio.tone(1000, 2000)


def test_mono_mixes_both_parties():
    rec = encode_recording(CALLEE, AGENT, "mono")
    assert rec.duration_ms == 3000 and rec.channels == "mono"
    pcm, rate, ch = audio.read_wav(rec.wav)
    assert (rate, ch, audio.duration_ms(pcm)) == (8000, 1, 3000)
    assert pcm == audio.mix(CALLEE, AGENT)

    x, rate, ch = _decode_mp3(rec.mp3)
    assert (rate, ch) == (8000, 1)
    assert abs(len(x) / rate - 3.0) < 0.2  # LAME adds encoder delay/padding
    spec = np.abs(np.fft.rfft(x[:16000, 0]))
    freqs = np.fft.rfftfreq(16000, 1 / 8000)
    top2 = sorted(freqs[np.argsort(spec)[-2:]].round())
    assert top2 == [440.0, 1000.0]


def test_dual_puts_callee_left_and_agent_right():
    rec = encode_recording(CALLEE, AGENT, "dual")
    x, rate, ch = _decode_mp3(rec.mp3)
    assert (rate, ch) == (8000, 2)
    assert abs(len(x) / rate - 3.0) < 0.2
    assert abs(_peak_hz(x[4000:12000, 0], rate) - 440) < 5
    assert abs(_peak_hz(x[4000:12000, 1], rate) - 1000) < 5
    # Agent stopped at 2 s: the right channel is (near) silent afterwards.
    assert np.sqrt(np.mean(x[20000:22000, 1] ** 2)) < 0.01 < np.sqrt(np.mean(x[20000:22000, 0] ** 2))
    left, right = audio.load_channels(rec.wav)
    assert left == CALLEE and right[: len(AGENT)] == AGENT


def test_facts_describe_the_mp3():
    rec = encode_recording(CALLEE, AGENT, "mono")
    assert rec.size_bytes == len(rec.mp3) and rec.sha256 == hashlib.sha256(rec.mp3).hexdigest()
    assert rec.mp3[:3] == b"ID3" or (rec.mp3[0] == 0xFF and rec.mp3[1] & 0xE0 == 0xE0)
    # 16 kbit/s mono for 3 s ~ 6 kB: small, as a telephone recording should be.
    assert 4000 < rec.size_bytes < 9000


def test_encoding_is_deterministic_and_stored(tmp_path):
    store = LocalMediaStore(tmp_path)
    a = process_recording(CALLEE, AGENT, "dual", store)
    b = process_recording(CALLEE, AGENT, "dual", store)
    assert a == b
    assert a.mp3_ref == f"sha256:{a.sha256}.mp3" and a.wav_ref.endswith(".wav")
    assert store.get(a.mp3_ref)[:3] in (b"ID3",) or store.get(a.mp3_ref)[0] == 0xFF


def test_empty_leg_and_bad_mode():
    rec = encode_recording(CALLEE, b"", "dual")
    assert rec.duration_ms == 3000
    with pytest.raises(ValueError):
        encode_recording(CALLEE, AGENT, "quad")
