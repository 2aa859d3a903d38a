"""Fetch a customer ``audio_url`` (MP3 or WAV) and store it as 8 kHz WAV.

Safety limits, all configurable per call:

* SSRF: the URL goes through :mod:`services.common.ssrf` (public addresses
  only, checked at connect time for every redirect hop);
* size: at most ``max_bytes`` downloaded (Content-Length is checked up front,
  and the stream is cut off when it overruns regardless);
* time: the whole fetch, redirects and body included, within ``timeout_s``;
* content: the type is sniffed from the bytes (RIFF/WAVE, or an ID3 tag / MPEG
  audio frame sync), never from the extension or Content-Type;
* decoded length: at most ``max_seconds`` of audio, so a small compressed file
  cannot expand into hours of PCM.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from services.common import audio
from services.common.media_store import MediaStore, get_media_store
from services.common.ssrf import SsrfError, check_url, guarded_async_client

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_TIMEOUT_S = 15.0
DEFAULT_MAX_SECONDS = 600.0


class AudioFetchError(Exception):
    """The audio could not be fetched or decoded; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class FetchedAudio:
    """What ``audio.fetched`` carries."""

    audio_ref: str
    duration_ms: int
    format: str  # "wav" | "mp3": what the source turned out to be


def sniff_format(head: bytes) -> str | None:
    """Identify WAV or MP3 from the first bytes; None if neither."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:3] == b"ID3":
        return "mp3"
    # MPEG audio frame header: 11 set sync bits, a valid version (not 01),
    # a valid layer (not 00), a bitrate index that is not 1111 (bad).
    if len(head) >= 3 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        version, layer, bitrate = (head[1] >> 3) & 0x3, (head[1] >> 1) & 0x3, head[2] >> 4
        if version != 0b01 and layer != 0b00 and bitrate != 0b1111:
            return "mp3"
    return None


def decode_to_pcm8k(data: bytes, fmt: str, max_seconds: float = DEFAULT_MAX_SECONDS) -> bytes:
    """Decode sniffed WAV/MP3 bytes to 8 kHz mono s16le. Blocking."""
    if fmt == "wav":
        try:
            pcm = audio.wav_to_pcm8k(data)
            return pcm[: int(max_seconds * audio.SAMPLE_RATE) * audio.SAMPLE_WIDTH]
        except Exception:
            pass  # not plain PCM (e.g. G.711 or ADPCM in WAV): let FFmpeg decode it
    return audio.decode_audio(data, max_seconds=max_seconds)


async def download(url: str, *, max_bytes: int = DEFAULT_MAX_BYTES, timeout_s: float = DEFAULT_TIMEOUT_S,
                   client: httpx.AsyncClient | None = None) -> bytes:
    """GET ``url`` through the SSRF guard with size and time limits."""
    try:
        check_url(url)
    except SsrfError as exc:
        raise AudioFetchError("url_not_allowed", str(exc)) from None
    own = client is None
    client = client or guarded_async_client(timeout=timeout_s)
    try:
        async with asyncio.timeout(timeout_s):
            async with client.stream("GET", url, headers={"Accept": "audio/mpeg, audio/wav, */*"}) as resp:
                if resp.status_code != 200:
                    raise AudioFetchError("http_error", f"status {resp.status_code}")
                declared = resp.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise AudioFetchError("too_large", f"{declared} bytes > {max_bytes}")
                body = bytearray()
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise AudioFetchError("too_large", f"more than {max_bytes} bytes")
                return bytes(body)
    except TimeoutError:
        raise AudioFetchError("timeout", f"not fetched within {timeout_s:g}s") from None
    except SsrfError as exc:
        raise AudioFetchError("url_not_allowed", str(exc)) from None
    except httpx.TooManyRedirects:
        raise AudioFetchError("too_many_redirects") from None
    except httpx.HTTPError as exc:
        raise AudioFetchError("fetch_failed", f"{type(exc).__name__}: {exc}") from None
    finally:
        if own:
            await client.aclose()


async def fetch_audio(url: str, *, store: MediaStore | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                      timeout_s: float = DEFAULT_TIMEOUT_S, max_seconds: float = DEFAULT_MAX_SECONDS,
                      client: httpx.AsyncClient | None = None) -> FetchedAudio:
    """Download, sniff, decode to 8 kHz and store ``url``'s audio."""
    data = await download(url, max_bytes=max_bytes, timeout_s=timeout_s, client=client)
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise AudioFetchError("unsupported_format", "content is neither WAV nor MP3")
    try:
        pcm = await audio.run_blocking(decode_to_pcm8k, data, fmt, max_seconds)
    except Exception as exc:
        raise AudioFetchError("decode_failed", f"{type(exc).__name__}: {exc}") from None
    if not pcm:
        raise AudioFetchError("decode_failed", "no audio samples")
    store = store or get_media_store()
    ref = await audio.run_blocking(store.put, audio.write_wav(pcm), "wav")
    return FetchedAudio(ref, audio.duration_ms(pcm), fmt)
