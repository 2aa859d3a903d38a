"""Audio helpers shared by the media services (TTS, recording, transcription).

The canonical internal format is 8 kHz, signed 16-bit little-endian, mono PCM
("pcm8k"): it is what a telephone leg carries once G.711 is decoded, so every
service converts to it at its boundary and nothing downstream has to ask.

CPU-heavy work (resampling, codecs, model inference) must not run on the event
loop; :func:`run_blocking` hands it to a small shared thread pool. Threads (not
processes) are enough because numpy, soxr, onnxruntime, CTranslate2 and PyAV
release the GIL in their hot loops.
"""

from __future__ import annotations

import asyncio
import io
import wave
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Callable, TypeVar

import numpy as np

from services.common.config import settings

SAMPLE_RATE = 8000
SAMPLE_WIDTH = 2  # bytes, s16le

T = TypeVar("T")

# ---------------------------------------------------------------------------
# Off-loop execution
# ---------------------------------------------------------------------------

_executor: ThreadPoolExecutor | None = None


def media_executor() -> ThreadPoolExecutor:
    """Return the process-wide pool for blocking media work.

    Sized by CANARY_MEDIA_WORKERS (default 2): the target machines have few
    cores and each model already uses several threads internally.
    """
    global _executor
    if _executor is None:
        workers = settings().media.workers
        _executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="media")
    return _executor


async def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in the media pool and await its result."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(media_executor(), partial(fn, *args, **kwargs))


# ---------------------------------------------------------------------------
# numpy <-> bytes
# ---------------------------------------------------------------------------


def pcm_to_array(pcm: bytes) -> np.ndarray:
    """View s16le bytes as an int16 array (a trailing odd byte is dropped)."""
    usable = len(pcm) - (len(pcm) % SAMPLE_WIDTH)
    return np.frombuffer(pcm[:usable], dtype="<i2")


def array_to_pcm(samples: np.ndarray) -> bytes:
    """Convert an int16 array, or a float array in [-1, 1], to s16le bytes."""
    if samples.dtype.kind == "f":
        samples = np.clip(np.rint(samples * 32767.0), -32768, 32767)
    return np.asarray(samples).astype("<i2", copy=False).tobytes()


def silence(ms: int, rate: int = SAMPLE_RATE) -> bytes:
    """Return ``ms`` milliseconds of digital silence as s16le mono."""
    return b"\x00\x00" * int(rate * max(ms, 0) / 1000)


def duration_ms(pcm: bytes, rate: int = SAMPLE_RATE, channels: int = 1) -> int:
    """Duration of s16le PCM in whole milliseconds."""
    frames = len(pcm) // (SAMPLE_WIDTH * channels)
    return int(frames * 1000 // rate)


# ---------------------------------------------------------------------------
# Resampling / channel handling
# ---------------------------------------------------------------------------


def to_mono(samples: np.ndarray, channels: int) -> np.ndarray:
    """Average interleaved channels into one (float64 to avoid int overflow)."""
    if channels <= 1:
        return samples
    frames = len(samples) // channels
    return samples[: frames * channels].reshape(frames, channels).astype(np.float64).mean(axis=1)


def resample_array(samples: np.ndarray, src_rate: float, dst_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a mono float/int array; returns float32 in [-1, 1].

    soxr's HQ mode is a proper band-limited resampler, so down-sampling to 8 kHz
    does not alias speech sibilants into the telephone band.
    """
    import soxr  # local import: keeps `import audio` cheap for pure helpers

    if samples.dtype.kind in "iu":
        x = samples.astype(np.float32) / 32768.0
    else:
        x = samples.astype(np.float32, copy=False)
    if len(x) == 0:
        return x
    if abs(src_rate - dst_rate) < 1e-9:
        return x
    return soxr.resample(x, src_rate, dst_rate, quality="HQ").astype(np.float32, copy=False)


def resample_pcm(pcm: bytes, src_rate: float, channels: int = 1, dst_rate: int = SAMPLE_RATE) -> bytes:
    """Convert s16le PCM of any rate and channel count to s16le mono ``dst_rate``."""
    mono = to_mono(pcm_to_array(pcm), channels)
    if isinstance(mono, np.ndarray) and mono.dtype.kind == "f":
        mono = mono / 32768.0
    return array_to_pcm(resample_array(mono, src_rate, dst_rate))


def apply_gain_db(pcm: bytes, gain_db: float) -> bytes:
    """Scale s16le PCM by ``gain_db`` decibels, clipping instead of wrapping."""
    if gain_db == 0:
        return pcm
    x = pcm_to_array(pcm).astype(np.float64) * (10.0 ** (gain_db / 20.0))
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()


def _padded_pair(a: bytes, b: bytes) -> tuple[np.ndarray, np.ndarray]:
    xa, xb = pcm_to_array(a), pcm_to_array(b)
    n = max(len(xa), len(xb))
    return np.pad(xa, (0, n - len(xa))), np.pad(xb, (0, n - len(xb)))


def mix(a: bytes, b: bytes) -> bytes:
    """Mix two mono s16le streams into one (sum with clipping; shorter is padded).

    Summing (not averaging) keeps each party at its own level, which is what a
    listener on the call heard; clipping only matters when both shout at once.
    """
    xa, xb = _padded_pair(a, b)
    return np.clip(xa.astype(np.int32) + xb.astype(np.int32), -32768, 32767).astype("<i2").tobytes()


def interleave(left: bytes, right: bytes) -> bytes:
    """Interleave two mono s16le streams into stereo (L, R); shorter is padded."""
    xl, xr = _padded_pair(left, right)
    return np.column_stack((xl, xr)).astype("<i2").reshape(-1).tobytes()


def split_stereo(pcm: bytes) -> tuple[bytes, bytes]:
    """Split interleaved stereo s16le into (left, right) mono streams."""
    x = pcm_to_array(pcm)
    x = x[: len(x) - (len(x) % 2)].reshape(-1, 2)
    return x[:, 0].astype("<i2").tobytes(), x[:, 1].astype("<i2").tobytes()


# ---------------------------------------------------------------------------
# WAV
# ---------------------------------------------------------------------------


def write_wav(pcm: bytes, rate: int = SAMPLE_RATE, channels: int = 1) -> bytes:
    """Wrap s16le PCM in a RIFF/WAVE container."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(SAMPLE_WIDTH)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def read_wav(data: bytes) -> tuple[bytes, int, int]:
    """Read a PCM WAV and return (s16le pcm, rate, channels).

    8/24/32-bit integer PCM is converted to 16-bit. Compressed WAVs (G.711,
    ADPCM) are rejected by the stdlib ``wave`` module; use :func:`decode_audio`.
    """
    with wave.open(io.BytesIO(data), "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if width == 2:
        pcm = raw
    elif width == 1:  # unsigned 8-bit
        pcm = ((np.frombuffer(raw, dtype=np.uint8).astype(np.int16) - 128) << 8).astype("<i2").tobytes()
    elif width == 3:
        b = np.frombuffer(raw[: len(raw) - len(raw) % 3], dtype=np.uint8).reshape(-1, 3)
        pcm = (b[:, 1].astype(np.uint16) | (b[:, 2].astype(np.uint16) << 8)).view("<i2").tobytes()
    elif width == 4:
        pcm = (np.frombuffer(raw, dtype="<i4") >> 16).astype("<i2").tobytes()
    else:  # pragma: no cover - wave only allows 1..4
        raise ValueError(f"unsupported WAV sample width {width}")
    return pcm, rate, channels


def load_channels(wav: bytes) -> tuple[bytes, bytes | None]:
    """Read a call recording's WAV back: (left/mono pcm, right pcm or None), 8 kHz."""
    pcm, rate, n = read_wav(wav)
    if rate != SAMPLE_RATE:
        raise ValueError(f"recording WAV must be {SAMPLE_RATE} Hz, got {rate}")
    if n == 2:
        left, right = split_stereo(pcm)
        return left, right
    return pcm, None


def wav_to_pcm8k(data: bytes) -> bytes:
    """Decode any PCM WAV to 8 kHz mono s16le."""
    pcm, rate, channels = read_wav(data)
    return resample_pcm(pcm, rate, channels)


def decode_audio(data: bytes, max_seconds: float | None = None) -> bytes:
    """Decode any container/codec PyAV (FFmpeg) understands to 8 kHz mono s16le.

    ``max_seconds`` stops decoding early, so a tiny compressed file cannot
    expand into hours of PCM in memory.
    """
    import av  # PyAV ships its own FFmpeg libraries in the wheel

    out = bytearray()
    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE) * SAMPLE_WIDTH
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(stream):
            for rf in resampler.resample(frame):
                out += bytes(rf.planes[0])[: rf.samples * SAMPLE_WIDTH]
            if limit is not None and len(out) >= limit:
                return bytes(out[:limit])
        for rf in resampler.resample(None):  # flush
            out += bytes(rf.planes[0])[: rf.samples * SAMPLE_WIDTH]
    return bytes(out if limit is None else out[:limit])


# ---------------------------------------------------------------------------
# G.711 (ITU-T) mu-law / A-law, bit-exact with the reference g711.c that the
# (deprecated) stdlib audioop also uses. Encoding goes through 64 K lookup
# tables built once, so both directions are single numpy gathers.
# ---------------------------------------------------------------------------

_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_SEG_AEND = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _build_ulaw_encode() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2  # 14-bit
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + (0x84 >> 2)
    seg = np.searchsorted(_SEG_UEND, mag, side="left")
    uval = (seg << 4) | ((mag >> (seg + 1)) & 0xF)
    uval = np.where(seg >= 8, 0x7F, uval)
    return (uval ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> np.ndarray:
    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype("<i2")


def _build_alaw_encode() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3  # 13-bit
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_SEG_AEND, mag, side="left")
    shift = np.where(seg < 2, 1, seg)
    aval = (seg << 4) | ((mag >> shift) & 0xF)
    aval = np.where(seg >= 8, 0x7F, aval)
    return (aval ^ mask).astype(np.uint8)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype("<i2")


_ULAW_ENC = _build_ulaw_encode()
# The same table indexed by the sample's 16 bits read unsigned: one lookup, no conversions
# (a media stream encodes 50 frames a second per call; this is a third of the old cost).
_ULAW_ENC_U16 = _ULAW_ENC[np.arange(65536) ^ 0x8000]
_ULAW_DEC = _build_ulaw_decode()
_ALAW_ENC = _build_alaw_encode()
_ALAW_DEC = _build_alaw_decode()


def ulaw_encode(pcm: bytes) -> bytes:
    """Encode s16le PCM to G.711 mu-law (one byte per sample)."""
    return _ULAW_ENC_U16[np.frombuffer(pcm, dtype="<u2", count=len(pcm) // SAMPLE_WIDTH)].tobytes()


def ulaw_decode(data: bytes) -> bytes:
    """Decode G.711 mu-law to s16le PCM."""
    return _ULAW_DEC[np.frombuffer(data, dtype=np.uint8)].tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    """Encode s16le PCM to G.711 A-law (one byte per sample)."""
    return _ALAW_ENC[pcm_to_array(pcm).astype(np.int32) + 32768].tobytes()


def alaw_decode(data: bytes) -> bytes:
    """Decode G.711 A-law to s16le PCM."""
    return _ALAW_DEC[np.frombuffer(data, dtype=np.uint8)].tobytes()


def rms_dbfs(pcm: bytes) -> float:
    """RMS level in dBFS (-inf for silence); handy for tests and level checks."""
    x = pcm_to_array(pcm).astype(np.float64)
    if len(x) == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(x * x)))
    return float("-inf") if rms == 0 else 20.0 * float(np.log10(rms / 32768.0))


def tone(freq_hz: float, ms: int, rate: int = SAMPLE_RATE, amplitude: float = 0.5) -> bytes:
    """A sine tone as s16le mono; used by tests and as a synthetic test signal."""
    n = int(rate * ms / 1000)
    t = np.arange(n) / rate
    return array_to_pcm(amplitude * np.sin(2 * np.pi * freq_hz * t))
