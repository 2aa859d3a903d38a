"""TTS worker: ``tts.requested`` -> ``tts.rendered`` | ``tts.failed``,
``audio.requested`` -> ``audio.fetched`` | ``audio.failed`` and, for the sandbox
carrier's scripted callees, ``sandbox.speech.requested`` -> ``sandbox.speech.rendered``
| ``sandbox.speech.failed`` (same renderer, same cache, per account: the gateway
runs no TTS engine).

Run: ``python -m services.tts.worker`` (consumer group ``tts``).
"""

from __future__ import annotations

import asyncio

from events import Envelope
from services.common.logging import configure

from .audio_fetch import AudioFetchError, fetch_audio
from services.common.event_worker import EventWorker, carry_step, serve, with_retries
from .render import Renderer, TtsRequestError

GROUP = "tts"


class TtsHandler:
    """Turns media requests into results; one :class:`Renderer` per process."""

    types = frozenset({"tts.requested", "sandbox.speech.requested", "audio.requested"})  # what the worker takes

    def __init__(self, renderer: Renderer | None = None, log=None) -> None:
        self.renderer = renderer or Renderer()
        self.log = log

    async def __call__(self, env: Envelope) -> list[Envelope]:
        if env.type == "tts.requested":
            return [await self._tts(env)]
        if env.type == "sandbox.speech.requested":
            return [await self._tts(env, "sandbox.speech")]
        if env.type == "audio.requested":
            return [await self._audio(env)]
        return []

    async def _tts(self, env: Envelope, kind: str = "tts") -> Envelope:
        """Render; answers ``<kind>.rendered`` or ``<kind>.failed``."""
        tts = {k: env.data[k] for k in ("text", "voice", "speed", "pitch") if k in env.data}
        try:
            # A transient failure (the media store's disk or network) is retried before it fails.
            res = await with_retries(lambda: self.renderer.render(tts, account_id=env.account_id),
                                     what="tts render", log=self.log)  # the account's cache
        except TtsRequestError as exc:
            return env.caused(f"{kind}.failed", carry_step(env, {"reason": str(exc), "errors": exc.errors}))
        except Exception as exc:
            return env.caused(f"{kind}.failed",
                              carry_step(env, {"reason": f"render error: {type(exc).__name__}: {exc}"}))
        return env.caused(f"{kind}.rendered", carry_step(env, res.to_dict()))

    async def _audio(self, env: Envelope) -> Envelope:
        url = env.data.get("url")
        if not isinstance(url, str) or not url:
            return env.caused("audio.failed", carry_step(env, {"reason": "url is required"}))
        try:
            res = await fetch_audio(url, store=self.renderer.store)
        except AudioFetchError as exc:
            return env.caused("audio.failed", carry_step(env, {"reason": str(exc), "code": exc.reason}))
        return env.caused("audio.fetched", carry_step(env, {"audio_ref": res.audio_ref,
                                                             "duration_ms": res.duration_ms,
                                                             "format": res.format}))


async def main() -> None:
    log = configure(GROUP)
    await serve(EventWorker(GROUP, TtsHandler(log=log), log=log))


if __name__ == "__main__":
    asyncio.run(main())
