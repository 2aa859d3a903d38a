"""Retry policy shared by the sync and async clients."""

from __future__ import annotations

import email.utils
import random
import time
from typing import Optional

RETRY_STATUSES = frozenset({429, 503})
INITIAL_DELAY = 0.5  # seconds
MAX_DELAY = 8.0
MAX_RETRY_AFTER = 60.0  # a longer Retry-After is not waited for: the error is raised


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    return max(0.0, parsed.timestamp() - time.time())


def backoff_delay(retry_index: int, retry_after: Optional[str] = None) -> Optional[float]:
    """How long to wait before retry number ``retry_index`` (0-based).

    The server's Retry-After wins when present (None is returned when it asks for more than
    MAX_RETRY_AFTER: the caller should give up rather than hang). Otherwise exponential
    backoff (0.5s, 1s, 2s, ... capped at 8s) with jitter in [50%, 100%] of that value.
    """
    hinted = parse_retry_after(retry_after)
    if hinted is not None:
        if hinted > MAX_RETRY_AFTER:
            return None
        return hinted
    base = min(MAX_DELAY, INITIAL_DELAY * (2**retry_index))
    return base * (0.5 + random.random() / 2)
