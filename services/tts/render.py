"""Render a ``tts`` request to stored audio, with a content cache.

Identical (text, voice, speed, pitch) renders once per account: the cache key is a
hash of those inputs and the account id (plus a render version bumped when output
would change), stored as a media-store alias pointing at the audio's content ref.
Concurrent identical requests of one account in one process share a single render.

The cache is per account because whether a render is a cache hit (or how fast it
comes back) tells whether that exact text was rendered before: shared, it would let
one account confirm another's one-time code by guessing. ``cache_hit`` stays on the
event for the services and is kept out of what customers see (events/public.py).

Synthesis runs in the media thread pool (:func:`services.common.audio.run_blocking`),
never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Mapping

from services.common import audio
from services.common.media_store import MediaStore, get_media_store
from services.lib.voices.catalog import DEFAULT_VOICE, Voice, get_voice, voice_for_language
from services.lib.voices.ssml import Segment, parse
from services.lib.voices.validate import validate_tts

from .engines import EspeakEngine, PiperEngine, TtsEngine

# Bump when engines, models or normalisation change what a render sounds like.
RENDER_VERSION = 1


class TtsRequestError(ValueError):
    """The tts request is invalid; ``errors`` is the :func:`validate_tts` list."""

    def __init__(self, errors: list[dict]) -> None:
        super().__init__("; ".join(e["message"] for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class RenderResult:
    """Outcome of one render (what ``tts.rendered`` carries)."""

    audio_ref: str
    duration_ms: int
    voice: str
    cache_hit: bool

    def to_dict(self) -> dict:
        """Event payload form."""
        return asdict(self)


def cache_key(text: str, voice: str, speed: float, pitch: float, account_id: str = "") -> str:
    """Stable hash of the render inputs, in the account's namespace ('' : the operator's, CLI and
    benchmarks)."""
    blob = json.dumps([RENDER_VERSION, account_id, text, voice, float(speed), float(pitch)], ensure_ascii=False)
    return "tts-" + hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _primary(lang: str) -> str:
    return lang.lower().split("-")[0]


class Renderer:
    """Turns tts requests into stored 8 kHz WAV audio."""

    def __init__(self, store: MediaStore | None = None, engines: Mapping[str, TtsEngine] | None = None) -> None:
        self.store = store or get_media_store()
        self.engines: dict[str, TtsEngine] = dict(engines or {"piper": PiperEngine(), "espeak": EspeakEngine()})
        self._inflight: dict[str, asyncio.Future[RenderResult]] = {}

    def synthesize(self, text: str, voice: Voice, speed: float = 1.0, pitch: float = 0.0) -> bytes:
        """Render text/SSML to pcm8k, switching voice for ``<lang>`` runs."""
        segments = parse(text, voice.language)
        out = bytearray()
        run: list[Segment] = []
        run_voice = voice

        def flush() -> None:
            if run:
                out.extend(self.engines[run_voice.engine].synthesize(run, run_voice, speed, pitch))
                run.clear()

        for seg in segments:
            seg_voice = voice
            if seg.lang and _primary(seg.lang) != _primary(voice.language):
                # Another language: use a voice that speaks it (same gender if possible);
                # with no such voice, the original voice reads it as best it can.
                seg_voice = voice_for_language(seg.lang, voice.gender) or voice
            if not seg.is_pause and seg_voice != run_voice:
                flush()
                run_voice = seg_voice
            run.append(seg)
        flush()
        return bytes(out)

    def render_sync(self, tts: Mapping, account_id: str = "") -> RenderResult:
        """Validate, look up the account's cache, render and store. Blocking."""
        errors = validate_tts(dict(tts))
        if errors:
            raise TtsRequestError(errors)
        text = tts["text"]
        voice = get_voice(tts.get("voice") or DEFAULT_VOICE)
        speed, pitch = float(tts.get("speed", 1.0)), float(tts.get("pitch", 0.0))
        key = cache_key(text, voice.id, speed, pitch, account_id)
        cached = self.store.get_alias(key)
        if cached:
            pcm, _, _ = audio.read_wav(self.store.get(cached))
            return RenderResult(cached, audio.duration_ms(pcm), voice.id, True)
        pcm = self.synthesize(text, voice, speed, pitch)
        ref = self.store.put(audio.write_wav(pcm), "wav")
        self.store.set_alias(key, ref)
        return RenderResult(ref, audio.duration_ms(pcm), voice.id, False)

    async def render(self, tts: Mapping, account_id: str = "") -> RenderResult:
        """Async :meth:`render_sync`, off the loop, deduplicating concurrent twins of one account."""
        try:
            key = cache_key(tts["text"], tts.get("voice") or DEFAULT_VOICE,
                            float(tts.get("speed", 1.0)), float(tts.get("pitch", 0.0)), account_id)
        except (KeyError, TypeError, ValueError):
            key = None  # invalid request: let render_sync report it
        if key is not None and key in self._inflight:
            first = await asyncio.shield(self._inflight[key])
            return RenderResult(first.audio_ref, first.duration_ms, first.voice, True)
        fut: asyncio.Future[RenderResult] = asyncio.get_running_loop().create_future()
        if key is not None:
            self._inflight[key] = fut
        try:
            result = await audio.run_blocking(self.render_sync, dict(tts), account_id)
            fut.set_result(result)
            return result
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: twins re-raise it, nobody else must log it
            raise
        finally:
            if key is not None:
                self._inflight.pop(key, None)
