"""The clients: :class:`Canary` (sync) and :class:`AsyncCanary` (asyncio)."""

from __future__ import annotations

from typing import Mapping, Optional

import httpx

from ._base import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, AsyncAPIClient, SyncAPIClient, TimeoutTypes
from .resources import AsyncVoiceResource, VoiceResource
from .webhooks import Webhooks

__all__ = ["Canary", "AsyncCanary"]


class Canary(SyncAPIClient):
    """Synchronous Canary client.

    >>> canary = Canary("sk_test_...")          # or set CANARY_API_KEY
    >>> call = canary.voice.call(to="+15551234567", from_="+15559876543",
    ...                          tts={"text": "Hello from Canary!"})

    ``base_url`` defaults to ``$CANARY_API_URL``, then ``https://api.canarymsg.dev``.
    ``timeout`` (seconds) applies to each HTTP request; ``max_retries`` is how many times
    a request is retried on 429/503 and network errors (never on other 4xx).
    """

    webhooks = Webhooks()

    def __init__(
        self,
        api_key: Optional[str] = None,
        *,
        base_url: Optional[str] = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Optional[Mapping[str, str]] = None,
        http_client: Optional[httpx.Client] = None,
    ) -> None:
        super().__init__(
            api_key, base_url=base_url, timeout=timeout, max_retries=max_retries,
            default_headers=default_headers, http_client=http_client,
        )
        self.voice = VoiceResource(self)

    def __enter__(self) -> "Canary":
        return self


class AsyncCanary(AsyncAPIClient):
    """Asyncio Canary client: the same API as :class:`Canary`, with ``await``."""

    webhooks = Webhooks()

    def __init__(
        self,
        api_key: Optional[str] = None,
        *,
        base_url: Optional[str] = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Optional[Mapping[str, str]] = None,
        http_client: Optional[httpx.AsyncClient] = None,
    ) -> None:
        super().__init__(
            api_key, base_url=base_url, timeout=timeout, max_retries=max_retries,
            default_headers=default_headers, http_client=http_client,
        )
        self.voice = AsyncVoiceResource(self)

    async def __aenter__(self) -> "AsyncCanary":
        return self
