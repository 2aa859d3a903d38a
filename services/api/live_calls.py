"""The per-account cap on concurrent calls: 429 ``too_many_live_calls``.

Live = accepted and not yet ended (``services.common.accounts.live_calls``: the
orchestrator's calls not ended, plus requests it has not decided yet). Counting costs a
query, so each API process keeps the last count per account for a second and adds what
it admitted since: an account far below its limit is admitted without a query; within
`margin` of it every POST counts afresh, and the admissions in flight in this process
(admitted, request row not yet written) count too. Several API processes can together
overshoot by the calls they admit in the same instant near the limit, never more.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable

from services.api.errors import ApiError
from services.common.accounts import Account, live_calls


class LiveCallLimit:
    def __init__(self, pool: Callable[[], Awaitable[Any]], default: int, *, ttl: float = 1.0, margin: int = 10):
        self.pool, self.default, self.ttl, self.margin = pool, default, ttl, margin
        self._counted: dict[str, tuple[float, int]] = {}  # account -> (when, live count then)
        self._since: dict[str, int] = {}  # admitted since that count
        self._inflight: dict[str, int] = {}  # admitted, request row not written yet

    def limit_of(self, account: Account) -> int:
        return account.max_live_calls if account.max_live_calls is not None else self.default

    async def admit(self, account: Account) -> None:
        """Admit one more call of `account`, or raise the 429. Pair with :meth:`settled`."""
        limit = self.limit_of(account)
        a = account.id
        now = time.monotonic()
        hit = self._counted.get(a)
        inflight = self._inflight.get(a, 0)
        estimate = None if hit is None or now - hit[0] > self.ttl else hit[1] + self._since.get(a, 0)
        if estimate is None or estimate + inflight + self.margin >= limit:
            n = await live_calls(await self.pool(), a)
            self._counted[a], self._since[a] = (time.monotonic(), n), 0
            if n + self._inflight.get(a, 0) >= limit:
                raise ApiError(429, "too_many_live_calls",
                               f"this account has {n} live calls and may have {limit} at once; retry when one ends",
                               headers={"Retry-After": "1"})
        self._inflight[a] = self._inflight.get(a, 0) + 1

    def settled(self, account: Account, accepted: bool) -> None:
        """The admitted call's request row is written (`accepted`) or the request failed."""
        a = account.id
        self._inflight[a] = max(0, self._inflight.get(a, 0) - 1)
        if accepted:
            self._since[a] = self._since.get(a, 0) + 1
