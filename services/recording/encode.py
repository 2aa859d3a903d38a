"""Encode a call recording from its two legs.

Inputs are the callee's audio and our side's audio (what we played: TTS,
prompts), each 8 kHz s16le mono. Outputs are a WAV (lossless, for
transcription and archive) and an MP3 (what the recording URL serves):

* ``mono``: both legs mixed into one channel;
* ``dual``: stereo, callee on the left, our side on the right, so each party
  can be transcribed and reviewed separately.

:func:`encode_recording` is pure (bytes in, bytes out); :func:`store_recording`
adds the media-store side effect. ``size_bytes`` and ``sha256`` describe the MP3,
the artifact customers download; the WAV is identified by its content ref.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from services.common import audio
from services.common.media_store import MediaStore, get_media_store

CHANNEL_MODES = ("mono", "dual")
# 8 kHz speech needs little: 16 kbit/s per channel is transparent for G.711
# sources (which carry 64 kbit/s of mu-law, ~4 kHz bandwidth).
_KBPS_PER_CHANNEL = 16


@dataclass(frozen=True)
class EncodedRecording:
    """The encoded files and their facts."""

    wav: bytes
    mp3: bytes
    channels: str
    duration_ms: int
    size_bytes: int  # of the MP3
    sha256: str  # hex digest of the MP3


@dataclass(frozen=True)
class StoredRecording:
    """An encoded recording after storing (what ``recording.completed`` carries)."""

    wav_ref: str
    mp3_ref: str
    channels: str
    duration_ms: int
    size_bytes: int
    sha256: str


def encode_mp3(pcm: bytes, channels: int, rate: int = audio.SAMPLE_RATE) -> bytes:
    """MP3-encode s16le PCM (interleaved if stereo) with LAME."""
    import lameenc

    enc = lameenc.Encoder()
    enc.set_in_sample_rate(rate)
    enc.set_channels(channels)
    enc.set_bit_rate(_KBPS_PER_CHANNEL * channels)
    enc.set_quality(2)  # 2 = high quality, slower; recordings are small
    return bytes(enc.encode(pcm) + enc.flush())


def encode_recording(callee_pcm: bytes, agent_pcm: bytes, channels: str = "mono") -> EncodedRecording:
    """Build WAV + MP3 from both legs. Shorter leg is padded with silence."""
    if channels not in CHANNEL_MODES:
        raise ValueError(f"channels must be one of {CHANNEL_MODES}, got {channels!r}")
    if channels == "dual":
        pcm, n = audio.interleave(callee_pcm, agent_pcm), 2
    else:
        pcm, n = audio.mix(callee_pcm, agent_pcm), 1
    wav = audio.write_wav(pcm, audio.SAMPLE_RATE, n)
    mp3 = encode_mp3(pcm, n)
    return EncodedRecording(
        wav=wav,
        mp3=mp3,
        channels=channels,
        duration_ms=audio.duration_ms(pcm, audio.SAMPLE_RATE, n),
        size_bytes=len(mp3),
        sha256=hashlib.sha256(mp3).hexdigest(),
    )


def store_recording(rec: EncodedRecording, store: MediaStore | None = None) -> StoredRecording:
    """Put both files in the media store."""
    store = store or get_media_store()
    return StoredRecording(
        wav_ref=store.put(rec.wav, "wav"),
        mp3_ref=store.put(rec.mp3, "mp3"),
        channels=rec.channels,
        duration_ms=rec.duration_ms,
        size_bytes=rec.size_bytes,
        sha256=rec.sha256,
    )


def process_recording(callee_pcm: bytes, agent_pcm: bytes, channels: str = "mono",
                      store: MediaStore | None = None) -> StoredRecording:
    """Encode and store in one blocking call (run it in the media pool)."""
    return store_recording(encode_recording(callee_pcm, agent_pcm, channels), store)


async def process_recording_async(callee_pcm: bytes, agent_pcm: bytes, channels: str = "mono",
                                  store: MediaStore | None = None) -> StoredRecording:
    """:func:`process_recording` off the event loop."""
    return await audio.run_blocking(process_recording, callee_pcm, agent_pcm, channels, store)
