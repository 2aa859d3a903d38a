"""An event loop on virtual time, for code whose behaviour is defined by its timers.

``loop.time()`` only moves when the loop has nothing ready to run: then it jumps
straight to the next scheduled timer instead of sleeping. Timers fire in the same
order and at the same (virtual) instants as on a real loop, so a test can assert
RFC timer values exactly, whatever the machine's speed or load.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any, Awaitable, Callable, TypeVar

T = TypeVar("T")


class _JumpingSelector:
    """Polls the real selector without blocking; an idle wait advances the clock instead."""

    def __init__(self, loop: "VirtualTimeLoop", real: selectors.BaseSelector) -> None:
        self._loop, self._real = loop, real

    def select(self, timeout: float | None = None):
        events = self._real.select(0)
        if events:
            return events
        if timeout is None:
            raise RuntimeError("virtual-time loop is idle with no timer scheduled: nothing can ever happen")
        self._loop.now += max(0.0, timeout)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self._selector = _JumpingSelector(self, self._selector)

    def time(self) -> float:
        return self.now


def run_virtual(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` to completion on a fresh virtual-time loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()
