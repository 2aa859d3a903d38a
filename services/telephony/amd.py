"""Answering machine detection: who answered, from the first seconds of the callee's audio.

Pure and synchronous: `MachineDetector.feed(frame)` takes the callee's 20 ms frames
(8 kHz s16le, as the carrier delivers them) and returns a `Detection` once it knows.
Time is counted in frames (call time from answer), so an accelerated sandbox call is
detected exactly like a real one and a test needs no clock.

What it listens for, per frame:

- **voice activity**: frame energy above an adaptive floor (the minimum of the last
  1.5 s plus a margin, never below -42 dBFS, the speech endpointer's threshold), so
  steady background noise is not taken for speech. An energy VAD rather than silero-vad:
  the gateway runs no neural runtime (no onnxruntime or torch in its process; the e2e
  suite checks its memory maps), and greeting *cadence* needs only speech vs silence;
- **a held pure tone** (a voicemail beep, a fax tone): the frame's energy at 77 frequencies
  on a 25 Hz grid from 300 to 2,200 Hz. That is what a bank of Goertzel filters computes;
  numpy's FFT of the frame zero-padded to 320 samples gives exactly those bins in one call
  (20-60 us a frame; a hand-written Goertzel recurrence in Python would cost 77 loops of
  160 samples, and the same bank as a matrix product went through BLAS threads, up to 40x
  slower on a loaded machine). The tone logic on top (which bin, held how long, at what
  level) is ours: no library we ship detects beeps. A frame is tonal when one bin holds
  most of its energy; a tone held `beep_frames` frames at one pitch and level is a beep
  (found ~170 ms after it starts).

The decision, from the greeting's cadence (a person says a short "Hello?" and waits for
an answer; a machine plays a long greeting without waiting):

- speech that goes on (pauses shorter than `human_silence_ms`) for more than
  `machine_speech_ms` -> `machine_start`;
- speech no longer than that followed by `human_silence_ms` of silence -> `human`;
- a beep before the decision -> `machine_start`; a 1,100 Hz (CNG) or 2,100 Hz (CED) tone
  held `fax_frames` before anyone spoke -> `fax`;
- nothing heard for `initial_silence_ms`, or no decision by the timeout -> `unknown`.

In `detect_message_end` mode a machine is followed to the end of its greeting: a beep
-> `machine_end_beep` when the tone stops (so a message left then is heard whole), or
`message_end_silence_ms` of silence after the greeting -> `machine_end_silence`; the
timeout then reports what is known, `machine_start`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from events.catalog import ANSWERED_BY

FRAME_MS = 20
RATE = 8000
FRAME_SAMPLES = RATE * FRAME_MS // 1000  # 160

Mode = Literal["enable", "detect_message_end"]
MACHINE = frozenset({"machine_start", "machine_end_beep", "machine_end_silence"})


@dataclass(frozen=True, slots=True)
class Detection:
    """The outcome: who answered, and when it was known (ms of call time from answer)."""

    answered_by: str
    decision_ms: int
    beep_ms: int | None = None  # when the beep was recognised (tone confirmed), if one was


@dataclass(frozen=True, slots=True)
class Params:
    """Thresholds (ms of call time). Defaults are tuned on bench/amd.py's evaluation set."""

    machine_speech_ms: int = 1800  # a greeting still going after this much is a machine
    human_silence_ms: int = 800  # a short utterance followed by this much silence is a person
    initial_silence_ms: int = 5000  # nothing said by then: unknown
    message_end_silence_ms: int = 2000  # detect_message_end: a greeting over without a beep
    max_beep_ms: int = 3000  # a beep longer than this is over for us anyway
    floor_db: float = -42.0  # voice threshold with no background noise
    noise_margin_db: float = 6.0  # above the noise floor to count as voice (9 lost speech at 10 dB SNR)
    voice_start_frames: int = 3  # 60 ms of sound before it counts as speech (the endpointer's)
    noise_window_frames: int = 75  # 1.5 s: the noise floor is the quietest frame in it
    tonal_ratio: float = 0.8  # share of a frame's energy in one bin to call it a tone
    tone_db: float = -40.0  # a tone quieter than this is not a beep
    # A beep holds one pitch and one level; a vowel drifts in both. Tuned so that no run of
    # the evaluation set's speech exceeds 4 frames, while every beep reaches 8.
    beep_frames: int = 8  # 160 ms held
    fax_frames: int = 15  # 300 ms of a fax tone
    tone_drift_hz: float = 10.0  # a held tone stays within this of where it started
    tone_level_db: float = 2.5  # ... and within this of its level


# The filter bank: the DFT of the Hann-windowed frame zero-padded to 320 samples has its bins
# exactly on a 25 Hz grid, so numpy's FFT gives every probed frequency in one call.
_STEP_HZ = 25.0
_NFFT = int(RATE / _STEP_HZ)  # 320
_FIRST, _LAST = int(300 / _STEP_HZ), int(2200 / _STEP_HZ)  # bins 12..88: 300-2,200 Hz
_FREQS = np.arange(_FIRST, _LAST + 1) * _STEP_HZ
_WINDOW = np.hanning(FRAME_SAMPLES)
# A unit-amplitude sine exactly on a probed frequency gives |X| = sum(w) / 2 and mean power 1/2:
# this scale maps "all of the frame's power in that bin" to a ratio of about 1.
_TONE_SCALE = 2.0 / (_WINDOW.sum() ** 2 / 4.0)
FAX_TONES_HZ = (1100.0, 2100.0)
TONE_MIN_DB = -50.0  # below any Params.tone_db worth setting


def frame_features(frame: bytes) -> tuple[float, float, float]:
    """(level dBFS, tonality 0..1, the strongest probed frequency) of one frame."""
    usable = min(len(frame), FRAME_SAMPLES * 2) & ~1  # an odd trailing byte is dropped
    x = np.frombuffer(frame[:usable], dtype="<i2").astype(np.float64) / 32768.0
    if len(x) < FRAME_SAMPLES:
        x = np.pad(x, (0, FRAME_SAMPLES - len(x)))
    power = float(np.mean(x * x))
    if power <= 1e-12:
        return float("-inf"), 0.0, 0.0
    level = 10.0 * float(np.log10(power))
    if level < TONE_MIN_DB:  # too quiet to be a beep: skip the filter bank (most frames of a call)
        return level, 0.0, 0.0
    mags = np.abs(np.fft.rfft(x * _WINDOW, _NFFT)[_FIRST:_LAST + 1]) ** 2
    k = int(np.argmax(mags))
    tonality = min(1.0, float(mags[k]) * _TONE_SCALE / 2.0 / power)
    freq = float(_FREQS[k])
    if 0 < k < len(_FREQS) - 1:  # between grid points: parabolic interpolation of the log peak
        a, b, c = np.log(mags[k - 1:k + 2] + 1e-20)
        if a - 2 * b + c < 0:
            freq += 0.5 * (a - c) / (a - 2 * b + c) * _STEP_HZ
    return level, tonality, freq


@dataclass
class MachineDetector:
    """Feed the callee's frames from answer on; `feed` returns the `Detection` once, then None."""

    mode: Mode = "enable"
    timeout_ms: int = 30_000
    params: Params = field(default_factory=Params)
    result: Detection | None = None
    frames: int = 0
    # greeting cadence
    _speech_start: int | None = None  # frame of the first voice
    _last_voice: int | None = None  # frame of the latest voice
    _machine_at: int | None = None  # machine_start decided (detect_message_end goes on)
    _levels: deque = field(default_factory=deque)
    _voice_run: int = 0
    _pending: deque = field(default_factory=deque)  # [frame, loud] not yet judged voice
    # tone tracking
    _tone_freq: float = 0.0
    _tone_level: float = 0.0
    _tone_run: int = 0
    _beep_at: int | None = None  # frame the beep was confirmed

    def __post_init__(self) -> None:
        if self.mode not in ("enable", "detect_message_end"):
            raise ValueError(f"mode must be enable or detect_message_end, not {self.mode!r}")
        if self.timeout_ms <= 0:
            raise ValueError("timeout_ms must be positive")

    @property
    def now_ms(self) -> int:
        return self.frames * FRAME_MS

    @property
    def done(self) -> bool:
        return self.result is not None

    def feed(self, frame: bytes) -> Detection | None:
        """One 20 ms frame; the `Detection` when this frame decides, else None."""
        if self.result is not None:
            return None
        self.frames += 1
        level, tonality, freq = frame_features(frame)
        p = self.params
        tonal = tonality >= p.tonal_ratio and level >= p.tone_db
        self._track_tone(tonal, freq, level)
        loud = level > self._threshold(level)
        # Voice is decided `beep_frames` late: a frame that turns out to be the start of a
        # held tone is not speech (nor is a tonal frame), but a vowel that looks tonal for a
        # frame or two is.
        self._pending.append([self.frames, loud])
        if self._tone_run >= p.beep_frames:
            for entry in self._pending:
                if entry[0] > self.frames - self._tone_run:
                    entry[1] = False
        if len(self._pending) > p.beep_frames:
            self._voice(*self._pending.popleft())
        return self._decide()

    def _voice(self, frame: int, loud: bool) -> None:
        self._voice_run = self._voice_run + 1 if loud else 0
        if self._voice_run >= self.params.voice_start_frames or (self._speech_start is not None and loud):
            if self._speech_start is None:  # a click is not speech: a few loud frames in a row are
                self._speech_start = frame - self._voice_run + 1
            self._last_voice = frame

    def _threshold(self, level: float) -> float:
        p = self.params
        self._levels.append(level)
        if len(self._levels) > p.noise_window_frames:
            self._levels.popleft()
        floor = min(self._levels)
        return max(p.floor_db, floor + p.noise_margin_db)

    def _track_tone(self, tonal: bool, freq: float, level: float) -> None:
        p = self.params
        if (tonal and self._tone_run and abs(freq - self._tone_freq) <= p.tone_drift_hz
                and abs(level - self._tone_level) <= p.tone_level_db):
            self._tone_run += 1
        elif tonal:
            self._tone_freq, self._tone_level, self._tone_run = freq, level, 1
        else:
            self._tone_run = 0

    def _finish(self, answered_by: str) -> Detection:
        beep = self._beep_at * FRAME_MS if self._beep_at is not None else None
        self.result = Detection(answered_by, self.now_ms, beep)
        return self.result

    def _ms(self, frames: int) -> int:
        return frames * FRAME_MS

    def _decide(self) -> Detection | None:
        p, n = self.params, self.frames
        # A tone at a fax pitch before anyone spoke may be a fax (wait for fax_frames); any
        # other held tone, or one after a greeting, is a beep.
        if (self._beep_at is None and self._tone_run >= p.beep_frames
                and (self._speech_start is not None or not self._is_fax_tone())):
            self._beep_at = n
        if self._machine_at is None:
            if self._speech_start is None and self._is_fax_tone() and self._tone_run >= p.fax_frames:
                return self._finish("fax")
            if self._beep_at is not None:
                self._machine_at = n
            elif self._speech_start is not None:
                spoken = self._ms(self._last_voice - self._speech_start + 1)
                quiet = self._ms(n - self._last_voice)
                if spoken > p.machine_speech_ms:
                    self._machine_at = n
                elif quiet >= p.human_silence_ms:
                    return self._finish("human")
            elif self.now_ms >= p.initial_silence_ms:
                return self._finish("unknown")
            if self._machine_at is not None and self.mode == "enable":
                return self._finish("machine_start")
        if self._machine_at is not None:  # detect_message_end: the greeting's end
            if self._beep_at is not None:
                if self._tone_run == 0 or self._ms(n - self._beep_at) >= p.max_beep_ms:
                    return self._finish("machine_end_beep")
            elif self._last_voice is not None and self._ms(n - self._last_voice) >= p.message_end_silence_ms:
                return self._finish("machine_end_silence")
        if self.now_ms >= self.timeout_ms:
            return self._finish("machine_start" if self._machine_at is not None else "unknown")
        return None

    def _is_fax_tone(self) -> bool:
        return self._tone_run > 0 and any(abs(self._tone_freq - f) <= 40 for f in FAX_TONES_HZ)


def is_machine(answered_by: str | None) -> bool:
    return answered_by in MACHINE
