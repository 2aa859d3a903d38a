"""services/telephony/amd.py: the pure answering-machine detector, on synthetic audio.

Speech is stood in for by syllable-shaped noise bursts (what an energy VAD hears), beeps
and fax tones are sines; bench/amd.py measures the detector on real TTS speech.
"""

from __future__ import annotations

import numpy as np
import pytest

from services.telephony.amd import ANSWERED_BY, FRAME_SAMPLES, MachineDetector, Params, frame_features, is_machine

RATE = 8000
rng = np.random.default_rng(1)


def sil(ms: float) -> np.ndarray:
    return np.zeros(int(RATE * ms / 1000))


def speech(ms: float, syllable_ms: float = 180, gap_ms: float = 60, level: float = 0.2) -> np.ndarray:
    """Noise bursts with a syllable envelope: loud, not tonal, with short dips between."""
    out = []
    while sum(map(len, out)) < RATE * ms / 1000:
        n = int(RATE * syllable_ms / 1000)
        out += [rng.standard_normal(n) * level * np.hanning(n), sil(gap_ms)]
    return np.concatenate(out)[: int(RATE * ms / 1000)]


def tone(freq: float, ms: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(RATE * ms / 1000)) / RATE
    return amp * np.sin(2 * np.pi * freq * t)


def pcm(*parts: np.ndarray) -> bytes:
    x = np.concatenate(parts)
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def detect(audio: bytes, **kw):
    det = MachineDetector(**kw)
    step = FRAME_SAMPLES * 2
    for i in range(0, len(audio), step):
        if (res := det.feed(audio[i:i + step])) is not None:
            return res, det
    return None, det


def test_a_short_hello_then_silence_is_a_person_decided_after_the_pause():
    res, _ = detect(pcm(sil(400), speech(500), sil(3000)))
    assert res.answered_by == "human"
    # speech ends at 900 ms; 800 ms of quiet (+ the 160 ms the voice decision lags) later
    assert 1600 <= res.decision_ms <= 2000, res


def test_a_long_greeting_is_a_machine_as_soon_as_it_outlasts_a_person():
    res, _ = detect(pcm(sil(300), speech(5000), sil(3000)))
    assert res.answered_by == "machine_start" and is_machine(res.answered_by)
    assert 2000 <= res.decision_ms <= 2500, res  # 300 ms lead-in + 1.8 s of speech (+ lag)


def test_detect_message_end_waits_for_the_end_of_the_beep():
    beep_start = 300 + 4000 + 500
    res, _ = detect(pcm(sil(300), speech(4000), sil(500), tone(1000, 600), sil(3000)), mode="detect_message_end")
    assert res.answered_by == "machine_end_beep"
    assert 0 < res.beep_ms - beep_start <= 300  # found within 300 ms of its start
    assert beep_start + 600 <= res.decision_ms <= beep_start + 700  # reported when the tone stops


@pytest.mark.parametrize("freq", [440, 850, 1000, 1400])
def test_beeps_of_common_pitches_are_found_within_300_ms(freq):
    res, _ = detect(pcm(sil(200), speech(2500), sil(300), tone(freq, 800), sil(2000)), mode="detect_message_end")
    assert res.answered_by == "machine_end_beep" and res.beep_ms - 3000 <= 300


def test_detect_message_end_without_a_beep_ends_on_silence():
    res, _ = detect(pcm(sil(300), speech(4000), sil(5000)), mode="detect_message_end")
    assert res.answered_by == "machine_end_silence" and res.beep_ms is None
    assert 6200 <= res.decision_ms <= 6500  # 2 s after the greeting's last sound


def test_enable_mode_reports_machine_start_for_a_short_greeting_with_a_beep():
    res, _ = detect(pcm(sil(300), speech(600), sil(300), tone(1000, 500), sil(3000)))
    assert res.answered_by == "machine_start" and res.beep_ms is not None


def test_a_person_is_a_person_in_detect_message_end_mode_too():
    res, _ = detect(pcm(sil(300), speech(600), sil(3000)), mode="detect_message_end")
    assert res.answered_by == "human"


@pytest.mark.parametrize("freq", [1100, 2100])
def test_a_fax_tone_before_anyone_speaks_is_a_fax(freq):
    res, _ = detect(pcm(sil(300), tone(freq, 3000), sil(3000)))
    assert res.answered_by == "fax" and res.decision_ms <= 300 + 400


def test_silence_is_unknown_after_the_initial_silence():
    res, _ = detect(pcm(sil(8000)))
    assert res == res.__class__("unknown", 5000, None)


def test_the_timeout_bounds_the_wait():
    # A machine whose greeting never ends, in detect_message_end mode: machine_start at the timeout.
    res, _ = detect(pcm(speech(12_000)), mode="detect_message_end", timeout_ms=8000)
    assert res.answered_by == "machine_start" and res.decision_ms == 8000
    res, _ = detect(pcm(sil(8000)), timeout_ms=3000, params=Params(initial_silence_ms=10_000))
    assert res.answered_by == "unknown" and res.decision_ms == 3000


def test_steady_background_noise_is_not_speech():
    noise = rng.standard_normal(RATE * 8) * 0.02  # about -37 dBFS, above the fixed threshold
    quiet = pcm(noise)
    res, _ = detect(quiet)
    assert res.answered_by == "unknown"
    # ... but a person speaking over it is heard.
    hello = np.concatenate([sil(500), speech(500), sil(3000)])
    res, _ = detect(pcm(noise[: len(hello)] + hello))
    assert res.answered_by == "human"


def test_a_click_is_not_speech():
    click = np.concatenate([sil(300), np.full(80, 0.5), sil(7000)])
    res, _ = detect(pcm(click))
    assert res.answered_by == "unknown"


def test_feed_after_the_decision_returns_none_and_keeps_the_result():
    res, det = detect(pcm(sil(300), speech(500), sil(3000)))
    assert det.done and det.feed(bytes(320)) is None and det.result == res


def test_bad_frames_are_read_as_far_as_they_go():
    """A short frame is zero-padded, an empty one is silence, an odd byte is dropped: never an error."""
    assert frame_features(b"") == (float("-inf"), 0.0, 0.0)
    level, tonality, _ = frame_features(pcm(tone(1000, 10)) + b"\x01")
    assert level > -20 and tonality > 0.3
    det = MachineDetector()
    for chunk in (b"", b"\x01", bytes(100)):
        assert det.feed(chunk) is None
    assert det.now_ms == 60  # each call is one frame of call time


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="mode"):
        MachineDetector(mode="sometimes")
    with pytest.raises(ValueError, match="timeout"):
        MachineDetector(timeout_ms=0)


def test_the_outcomes_are_the_public_answered_by_values():
    assert ANSWERED_BY == ("human", "machine_start", "machine_end_beep", "machine_end_silence", "fax", "unknown")
    assert not is_machine("human") and not is_machine(None) and is_machine("machine_end_beep")
