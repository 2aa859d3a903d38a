"""espeak-ng TTS (Debian package ``espeak-ng``), run as a subprocess.

Formant synthesis: robotic but intelligible, tiny, and it speaks 100+
languages, which is what the ``*-Standard-*`` voices are for.

Speed maps to words per minute around espeak's default of 175 wpm. Pitch maps
to espeak's 0-99 pitch scale (50 = default) at 2.5 steps per semitone: an
approximation, espeak has no exact semitone control.
"""

from __future__ import annotations

import shutil
import subprocess

from services.common import audio
from services.common.config import settings
from services.lib.voices.catalog import Voice

from .base import SegmentEngine

_DEFAULT_WPM = 175
_WPM_LIMITS = (80, 450)  # espeak-ng's accepted range
_TIMEOUT_S = 30


class EspeakError(RuntimeError):
    """espeak-ng failed or is not installed."""


def parse_stream_wav(data: bytes) -> tuple[bytes, int]:
    """Parse the WAV espeak-ng writes to stdout: (pcm, rate).

    When streaming, espeak cannot seek back to fix the RIFF/data sizes, so the
    header carries placeholder lengths; we read the format and take everything
    after the ``data`` tag instead of trusting the sizes.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise EspeakError("espeak-ng did not produce a WAV stream")
    pos, rate = 12, None
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if tag == b"fmt ":
            channels = int.from_bytes(data[pos + 10:pos + 12], "little")
            rate = int.from_bytes(data[pos + 12:pos + 16], "little")
            bits = int.from_bytes(data[pos + 22:pos + 24], "little")
            if channels != 1 or bits != 16:
                raise EspeakError(f"unexpected espeak format {channels}ch/{bits}bit")
        elif tag == b"data":
            if rate is None:
                raise EspeakError("WAV data before fmt")
            pcm = data[pos + 8:]
            return pcm[: len(pcm) - len(pcm) % 2], rate
        pos += 8 + size + (size & 1)
    raise EspeakError("no data chunk in espeak output")


class EspeakEngine(SegmentEngine):
    """Renders ``engine="espeak"`` voices via the espeak-ng binary."""

    name = "espeak"

    def __init__(self, binary: str | None = None) -> None:
        self.binary = binary or settings().tts.espeak_bin or shutil.which("espeak-ng") or "espeak-ng"

    def _synth(self, text: str, voice: Voice, rate: float, pitch_st: float) -> bytes:
        wpm = int(min(max(_DEFAULT_WPM * rate, _WPM_LIMITS[0]), _WPM_LIMITS[1]))
        pitch = int(min(max(50 + 2.5 * pitch_st, 0), 99))
        # Text goes through stdin, never argv: no option injection ("-w /x")
        # and no argv length limit. -b 1 = input is UTF-8.
        cmd = [self.binary, "-v", voice.engine_voice, "-s", str(wpm), "-p", str(pitch), "-b", "1", "--stdout"]
        try:
            proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, timeout=_TIMEOUT_S)
        except FileNotFoundError:
            raise EspeakError("espeak-ng is not installed") from None
        except subprocess.TimeoutExpired:
            raise EspeakError("espeak-ng timed out") from None
        if proc.returncode != 0:
            raise EspeakError(f"espeak-ng exited {proc.returncode}: {proc.stderr.decode(errors='replace')[:200]}")
        pcm, rate_hz = parse_stream_wav(proc.stdout)
        return audio.resample_pcm(pcm, rate_hz)
