"""Cursor pagination: iterate a list endpoint and the SDK fetches the next pages for you.

List responses look like ``{"data": [...], "has_more": true, "next_cursor": "..."}``;
the next page is requested with the same filters plus ``cursor=<next_cursor>``.
"""

from __future__ import annotations

from typing import (
    Any,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    Generator,
    Generic,
    Iterator,
    List,
    Optional,
    Type,
    TypeVar,
)

from ._models import CanaryObject

T = TypeVar("T", bound=CanaryObject)

CURSOR_PARAM = "cursor"


def _items(body: Any) -> List[Any]:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in ("data", "items", "results"):
            if isinstance(body.get(key), list):
                return body[key]
    return []


def next_page_params(body: Any, params: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The query for the page after ``body``, or None when it was the last one."""
    if not isinstance(body, dict):
        return None
    cursor = body.get("next_cursor")
    if cursor:
        return {**params, CURSOR_PARAM: cursor}
    return None


class SyncPage(Generic[T]):
    """One page of results. Iterating it yields every item of every following page too."""

    def __init__(
        self,
        body: Any,
        model: Type[T],
        params: Dict[str, Any],
        fetch: Callable[[Dict[str, Any]], Any],
    ) -> None:
        self._body = body
        self._model = model
        self._params = params
        self._fetch = fetch
        self.data: List[T] = [model(x) if isinstance(x, dict) else x for x in _items(body)]
        self.next_cursor: Optional[str] = body.get("next_cursor") if isinstance(body, dict) else None
        self.has_more: bool = bool(
            body.get("has_more", self.next_cursor is not None) if isinstance(body, dict) else False
        )

    def has_next_page(self) -> bool:
        return next_page_params(self._body, self._params) is not None and bool(self.data)

    def next_page(self) -> Optional["SyncPage[T]"]:
        params = next_page_params(self._body, self._params)
        if params is None or not self.data:
            return None
        return SyncPage(self._fetch(params), self._model, params, self._fetch)

    def iter_pages(self) -> Iterator["SyncPage[T]"]:
        page: Optional[SyncPage[T]] = self
        while page is not None:
            yield page
            page = page.next_page()

    def __iter__(self) -> Iterator[T]:
        for page in self.iter_pages():
            yield from page.data

    def __repr__(self) -> str:
        return f"SyncPage(data={self.data!r}, has_more={self.has_more!r}, next_cursor={self.next_cursor!r})"


class AsyncPage(Generic[T]):
    def __init__(
        self,
        body: Any,
        model: Type[T],
        params: Dict[str, Any],
        fetch: Callable[[Dict[str, Any]], Awaitable[Any]],
    ) -> None:
        self._body = body
        self._model = model
        self._params = params
        self._fetch = fetch
        self.data: List[T] = [model(x) if isinstance(x, dict) else x for x in _items(body)]
        self.next_cursor: Optional[str] = body.get("next_cursor") if isinstance(body, dict) else None
        self.has_more: bool = bool(
            body.get("has_more", self.next_cursor is not None) if isinstance(body, dict) else False
        )

    def has_next_page(self) -> bool:
        return next_page_params(self._body, self._params) is not None and bool(self.data)

    async def next_page(self) -> Optional["AsyncPage[T]"]:
        params = next_page_params(self._body, self._params)
        if params is None or not self.data:
            return None
        return AsyncPage(await self._fetch(params), self._model, params, self._fetch)

    async def iter_pages(self) -> AsyncIterator["AsyncPage[T]"]:
        page: Optional[AsyncPage[T]] = self
        while page is not None:
            yield page
            page = await page.next_page()

    async def _iter_items(self) -> AsyncIterator[T]:
        async for page in self.iter_pages():
            for item in page.data:
                yield item

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iter_items()


class AsyncPaginator(Generic[T]):
    """What async ``list()`` returns: ``await`` it for the first page, or ``async for`` over
    it for every item of every page."""

    def __init__(
        self, model: Type[T], params: Dict[str, Any], fetch: Callable[[Dict[str, Any]], Awaitable[Any]]
    ) -> None:
        self._model = model
        self._params = params
        self._fetch = fetch

    async def _first(self) -> AsyncPage[T]:
        return AsyncPage(await self._fetch(self._params), self._model, self._params, self._fetch)

    def __await__(self) -> Generator[Any, None, AsyncPage[T]]:
        return self._first().__await__()

    async def _iter(self) -> AsyncIterator[T]:
        page = await self._first()
        async for item in page:
            yield item

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iter()
