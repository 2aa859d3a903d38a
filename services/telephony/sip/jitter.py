"""A small receive jitter buffer: reorders packets within a window and counts loss.

Playout is driven by the caller's 20 ms media clock: each ``pop()`` yields the next
packet's payload in sequence order, or None when that frame is missing (the caller
plays silence, which keeps the far-end track aligned with ours).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class JitterStats:
    received: int = 0
    lost: int = 0  # frames played out as missing
    late: int = 0  # arrived after their playout time (dropped)
    duplicates: int = 0
    reordered: int = 0
    overflow: int = 0  # dropped because the buffer was over its depth limit
    resyncs: int = 0


class JitterBuffer:
    """Reorder window of ``depth`` packets; at most ``max_depth`` packets held."""

    # A jump this large is a new stream (far-end restart), not loss to account.
    RESYNC_GAP = 100

    def __init__(self, depth: int = 3, max_depth: int = 12) -> None:
        self.depth = depth
        self.max_depth = max_depth
        self.stats = JitterStats()
        self._buf: dict[int, bytes] = {}
        self._next: int | None = None  # extended seq to play next
        self._highest: int | None = None
        self._started = False

    def __len__(self) -> int:
        return len(self._buf)

    def _extend(self, seq: int) -> int:
        if self._highest is None:
            return seq
        # Pick the 32-bit extension closest to the highest seq seen (handles wrap).
        base = self._highest & ~0xFFFF
        cands = (base - 0x10000 + seq, base + seq, base + 0x10000 + seq)
        return min(cands, key=lambda c: abs(c - self._highest))

    def push(self, seq: int, payload: bytes) -> None:
        """Store a received packet's payload by its 16-bit sequence number."""
        ext = self._extend(seq)
        if self._next is not None and abs(ext - self._next) > self.RESYNC_GAP:
            self._buf.clear()
            self._next, self._highest, self._started = ext, ext, False
            self.stats.resyncs += 1
        if self._next is not None and ext < self._next:
            self.stats.late += 1
            return
        if ext in self._buf:
            self.stats.duplicates += 1
            return
        if self._highest is not None and ext < self._highest:
            self.stats.reordered += 1
        self.stats.received += 1
        self._buf[ext] = payload
        if self._highest is None or ext > self._highest:
            self._highest = ext
        if self._next is None or (not self._started and ext < self._next):
            self._next = ext
        while len(self._buf) > self.max_depth:
            # Far end sends faster than we play (clock drift or a burst): cap latency.
            oldest = min(self._buf)
            del self._buf[oldest]
            self.stats.overflow += 1
            self._next = max(self._next, oldest + 1)

    def pop(self) -> bytes | None:
        """Payload for the next 20 ms slot, or None (missing frame or empty buffer)."""
        if self._next is None:
            return None
        if not self._started:
            if len(self._buf) < self.depth:
                return None  # prefill so late packets inside the window still make it
            self._started = True
        payload = self._buf.pop(self._next, None)
        if payload is not None:
            self._next += 1
            return payload
        if not self._buf:
            return None  # underrun: the far end paused; do not count loss yet
        if len(self._buf) >= self.depth or min(self._buf) - self._next >= self.depth:
            self.stats.lost += 1
            self._next += 1
        return None
