"""HTTP plumbing shared by :class:`~canary.Canary` and :class:`~canary.AsyncCanary`."""

from __future__ import annotations

import asyncio
import os
import platform
import time
import uuid
from typing import Any, Dict, Mapping, Optional, Union
from urllib.parse import quote, urljoin, urlsplit

import httpx

from ._errors import APIConnectionError, APITimeoutError, CanaryError, error_from_response
from ._retry import RETRY_STATUSES, backoff_delay
from ._version import __version__

DEFAULT_BASE_URL = "https://api.canarymsg.dev"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 2

TimeoutTypes = Union[float, httpx.Timeout, None]


class _NotGiven:
    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()


def seg(value: str) -> str:
    """One URL path segment (ids, E.164 numbers with their '+')."""
    if not isinstance(value, str) or not value:
        raise CanaryError(f"expected a non-empty id string, got {value!r}")
    return quote(value, safe="")


def clean_params(params: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in (params or {}).items():
        if value is None or value is NOT_GIVEN:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out[key] = value
    return out


def clean_body(body: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None and v is not NOT_GIVEN}


class BaseClient:
    def __init__(
        self,
        api_key: Optional[str],
        *,
        base_url: Optional[str],
        timeout: TimeoutTypes,
        max_retries: int,
        default_headers: Optional[Mapping[str, str]],
    ) -> None:
        api_key = api_key or os.environ.get("CANARY_API_KEY")
        if not api_key:
            raise CanaryError(
                "no API key: pass Canary('sk_...') or set the CANARY_API_KEY environment variable"
            )
        self.api_key = api_key
        self.base_url = (base_url or os.environ.get("CANARY_API_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.timeout: TimeoutTypes = timeout
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.max_retries = max_retries
        self._default_headers = dict(default_headers or {})

    # -- request building ----------------------------------------------------------------

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url + path

    def _same_origin(self, url: str) -> bool:
        a, b = urlsplit(url), urlsplit(self.base_url)
        return (a.scheme, a.netloc) == (b.scheme, b.netloc)

    def _headers(
        self, method: str, url: str, idempotency_key: Optional[str], extra: Optional[Mapping[str, str]]
    ) -> Dict[str, str]:
        headers = {
            "User-Agent": f"canary-python/{__version__} (python {platform.python_version()})",
            "Accept": "application/json",
        }
        if self._same_origin(url):  # never send the key to a third-party media host
            headers["Authorization"] = f"Bearer {self.api_key}"
        headers.update(self._default_headers)
        if method == "POST":
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        headers.update(extra or {})
        return headers

    @staticmethod
    def _parse(response: httpx.Response) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        ctype = response.headers.get("content-type", "")
        if "json" in ctype:
            return response.json()
        try:
            return response.json()
        except ValueError:
            return response.text

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.headers, response.text)

    def _timeout(self, timeout: Any) -> Any:
        t = self.timeout if timeout is NOT_GIVEN else timeout
        return httpx.Timeout(t) if isinstance(t, (int, float)) else t


class SyncAPIClient(BaseClient):
    def __init__(
        self,
        api_key: Optional[str],
        *,
        base_url: Optional[str],
        timeout: TimeoutTypes,
        max_retries: int,
        default_headers: Optional[Mapping[str, str]],
        http_client: Optional[httpx.Client],
    ) -> None:
        super().__init__(
            api_key, base_url=base_url, timeout=timeout, max_retries=max_retries,
            default_headers=default_headers,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(follow_redirects=True)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self: Any) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        idempotency_key: Optional[str] = None,
        timeout: Any = NOT_GIVEN,
        headers: Optional[Mapping[str, str]] = None,
    ) -> httpx.Response:
        url = self._url(path)
        hdrs = self._headers(method, url, idempotency_key, headers)  # same key on every retry
        retry = 0
        while True:
            try:
                # `or None`: httpx replaces a URL's own query string when given params={}
                # (signed recording URLs carry theirs).
                response = self._http.request(
                    method, url, params=clean_params(params) or None, json=json, headers=hdrs,
                    timeout=self._timeout(timeout),
                )
            except httpx.TimeoutException as exc:
                if retry < self.max_retries:
                    time.sleep(backoff_delay(retry) or 0)
                    retry += 1
                    continue
                raise APITimeoutError(f"request timed out: {method} {url}") from exc
            except httpx.TransportError as exc:
                if retry < self.max_retries:
                    time.sleep(backoff_delay(retry) or 0)
                    retry += 1
                    continue
                raise APIConnectionError(f"could not reach the API: {exc}") from exc
            if response.status_code in RETRY_STATUSES and retry < self.max_retries:
                delay = backoff_delay(retry, response.headers.get("retry-after"))
                if delay is not None:
                    response.close()
                    time.sleep(delay)
                    retry += 1
                    continue
            self._raise_for(response)
            return response

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._parse(self._send(method, path, **kwargs))


class AsyncAPIClient(BaseClient):
    def __init__(
        self,
        api_key: Optional[str],
        *,
        base_url: Optional[str],
        timeout: TimeoutTypes,
        max_retries: int,
        default_headers: Optional[Mapping[str, str]],
        http_client: Optional[httpx.AsyncClient],
    ) -> None:
        super().__init__(
            api_key, base_url=base_url, timeout=timeout, max_retries=max_retries,
            default_headers=default_headers,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(follow_redirects=True)

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self: Any) -> Any:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        idempotency_key: Optional[str] = None,
        timeout: Any = NOT_GIVEN,
        headers: Optional[Mapping[str, str]] = None,
    ) -> httpx.Response:
        url = self._url(path)
        hdrs = self._headers(method, url, idempotency_key, headers)
        retry = 0
        while True:
            try:
                response = await self._http.request(
                    method, url, params=clean_params(params) or None, json=json, headers=hdrs,
                    timeout=self._timeout(timeout),
                )
            except httpx.TimeoutException as exc:
                if retry < self.max_retries:
                    await asyncio.sleep(backoff_delay(retry) or 0)
                    retry += 1
                    continue
                raise APITimeoutError(f"request timed out: {method} {url}") from exc
            except httpx.TransportError as exc:
                if retry < self.max_retries:
                    await asyncio.sleep(backoff_delay(retry) or 0)
                    retry += 1
                    continue
                raise APIConnectionError(f"could not reach the API: {exc}") from exc
            if response.status_code in RETRY_STATUSES and retry < self.max_retries:
                delay = backoff_delay(retry, response.headers.get("retry-after"))
                if delay is not None:
                    await response.aclose()
                    await asyncio.sleep(delay)
                    retry += 1
                    continue
            self._raise_for(response)
            return response

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._parse(await self._send(method, path, **kwargs))


def resolve_media_url(base_url: str, url: str) -> str:
    return urljoin(base_url + "/", url)
