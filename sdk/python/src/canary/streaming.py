"""Live event streams (Server-Sent Events) as iterators: ``calls.follow(id)`` and ``events.follow()``.

The SSE wire format is a few lines of text (WHATWG HTML, "server-sent events"); parsing
it here keeps the SDK's one dependency, httpx. The iterators yield every event of the
log as a :class:`CallEvent` and resume by themselves: on a dropped connection or a
``gap`` (the stream fell behind), they reconnect with ``Last-Event-ID`` so nothing is
missed on a call's stream (the account's stream resumes from the server's recent window).
A call's stream ends after the server's ``end`` (the call ended and its recording and
transcript are in).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator, Dict, Iterable, Iterator, List, Optional, Tuple

import httpx

from ._models import CallEvent
from ._retry import backoff_delay

# The server sends a comment every 15 s: a read that waits far longer means a dead link.
READ_TIMEOUT_S = 60.0
CONTROL = ("end", "gap")


class SSEParser:
    """Feed lines, get ``(event, id, data)`` for each complete message."""

    def __init__(self) -> None:
        self._event, self._id, self._data = "", None, []  # type: ignore[var-annotated]

    def feed(self, line: str) -> Optional[Tuple[str, Optional[str], str]]:
        if line == "":
            if not self._data and not self._event:
                return None
            out = (self._event or "message", self._id, "\n".join(self._data))
            self._event, self._id, self._data = "", None, []
            return out
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None


def _messages(lines: Iterable[str]) -> Iterator[Tuple[str, Optional[str], str]]:
    p = SSEParser()
    for line in lines:
        msg = p.feed(line.rstrip("\r"))
        if msg is not None:
            yield msg


def _event(data: str) -> CallEvent:
    return CallEvent(json.loads(data))


class _State:
    """Where a stream is: its last event id, and how many reconnects failed in a row."""

    def __init__(self, last_event_id: Optional[str], max_retries: int) -> None:
        self.last_event_id = last_event_id
        self.failures = 0
        self.max_retries = max_retries

    def headers(self) -> Dict[str, str]:
        h = {"Accept": "text/event-stream"}
        if self.last_event_id:
            h["Last-Event-ID"] = self.last_event_id
        return h

    def failed(self, exc: Exception) -> float:
        """The wait before the next try; re-raises once retries are spent."""
        self.failures += 1
        if self.failures > self.max_retries:
            raise exc
        return backoff_delay(self.failures - 1) or 0.5


def _timeout() -> httpx.Timeout:
    return httpx.Timeout(10.0, read=READ_TIMEOUT_S)


def follow_sync(client: Any, path: str, last_event_id: Optional[str] = None) -> Iterator[CallEvent]:
    """The sync iterator behind ``Canary().voice.calls.follow`` / ``.events.follow``."""
    st = _State(last_event_id, max(client.max_retries, 2))
    url = client._url(path)
    while True:
        try:
            with client._http.stream("GET", url, params={"follow": "true"}, timeout=_timeout(),
                                     headers={**client._headers("GET", url, None, None), **st.headers()}) as r:
                if r.status_code >= 400:
                    r.read()
                    client._raise_for(r)
                for event, _id, data in _messages(r.iter_lines()):
                    st.failures = 0
                    if event == "end":
                        return
                    if event == "gap":
                        break  # reconnect from the last event
                    ev = _event(data)
                    st.last_event_id = ev.id
                    yield ev
                else:
                    time.sleep(0.5)  # closed without `end` (a restart): resume shortly
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            time.sleep(st.failed(exc))


async def follow_async(client: Any, path: str, last_event_id: Optional[str] = None) -> AsyncIterator[CallEvent]:
    """The async iterator behind ``AsyncCanary().voice.calls.follow`` / ``.events.follow``."""
    st = _State(last_event_id, max(client.max_retries, 2))
    url = client._url(path)
    while True:
        try:
            async with client._http.stream("GET", url, params={"follow": "true"}, timeout=_timeout(),
                                           headers={**client._headers("GET", url, None, None),
                                                    **st.headers()}) as r:
                if r.status_code >= 400:
                    await r.aread()
                    client._raise_for(r)
                p = SSEParser()
                async for line in r.aiter_lines():
                    msg = p.feed(line.rstrip("\r"))
                    if msg is None:
                        continue
                    st.failures = 0
                    event, _id, data = msg
                    if event == "end":
                        return
                    if event == "gap":
                        break
                    ev = _event(data)
                    st.last_event_id = ev.id
                    yield ev
                else:
                    await asyncio.sleep(0.5)  # closed without `end` (a restart): resume shortly
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            await asyncio.sleep(st.failed(exc))


__all__: List[str] = ["SSEParser", "follow_sync", "follow_async"]
