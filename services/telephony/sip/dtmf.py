"""DTMF: RFC 4733 telephone-event packets (send and deduplicated receive) and an
in-band Goertzel detector / tone generator for peers without telephone-event."""

from __future__ import annotations

import math
import struct
from array import array
from dataclasses import dataclass

EVENTS = "0123456789*#ABCD"
ROW_FREQS = (697.0, 770.0, 852.0, 941.0)
COL_FREQS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = ("123A", "456B", "789C", "*0#D")


def digit_code(digit: str) -> int:
    """RFC 4733 event code of a DTMF digit."""
    idx = EVENTS.find(digit.upper())
    if idx < 0 or len(digit) != 1:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return idx


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int
    duration: int  # in timestamp units (samples at 8 kHz)

    def pack(self) -> bytes:
        return struct.pack("!BBH", self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration & 0xFFFF)


def parse_event(payload: bytes) -> TelephoneEvent:
    """Parse the 4-byte RFC 4733 payload (only the first event of a packet is used)."""
    if len(payload) < 4:
        raise ValueError("short telephone-event payload")
    ev, flags, dur = struct.unpack_from("!BBH", payload)
    return TelephoneEvent(ev, bool(flags & 0x80), flags & 0x3F, dur)


def event_packets(digit: str, duration_ms: int = 100, volume: int = 10) -> list[tuple[bytes, bool]]:
    """Payloads (with marker flag) for one digit, one per 20 ms tick.

    Every packet of the event shares the RTP timestamp of its start; the duration
    grows by 160 per packet, and the end packet is sent three times (RFC 4733 2.5.1.4).
    """
    code = digit_code(digit)
    n = max(1, duration_ms // 20)
    out = [(TelephoneEvent(code, False, volume, 160 * (i + 1)).pack(), i == 0) for i in range(n - 1)]
    end = TelephoneEvent(code, True, volume, 160 * n).pack()
    out += [(end, n == 1 and i == 0) for i in range(3)]
    return out


class TelephoneEventReceiver:
    """Turns RFC 4733 packets into digits, once per event.

    An event is identified by its RTP timestamp: the three end packets (and any
    retransmission) carry the same one, so only the first end packet reports. If an
    event's end packets are all lost, the next event (new timestamp) flushes it.
    """

    def __init__(self) -> None:
        self._current_ts: int | None = None
        self._current: TelephoneEvent | None = None
        self._reported: set[int] = set()
        self._order: list[int] = []

    def feed(self, timestamp: int, payload: bytes) -> list[tuple[str, int]]:
        """Return a list of (digit, duration_ms) completed by this packet."""
        ev = parse_event(payload)
        out: list[tuple[str, int]] = []
        if timestamp in self._reported:
            return out  # a retransmitted end packet of a digit already reported
        if self._current_ts is not None and timestamp != self._current_ts and self._current is not None:
            out += self._report(self._current_ts, self._current)  # lost end packets
        self._current_ts, self._current = timestamp, ev
        if ev.end:
            out += self._report(timestamp, ev)
            self._current_ts, self._current = None, None
        return out

    def _report(self, ts: int, ev: TelephoneEvent) -> list[tuple[str, int]]:
        self._reported.add(ts)
        self._order.append(ts)
        if len(self._order) > 64:  # bounded memory over a long call
            self._reported.discard(self._order.pop(0))
        if ev.event >= len(EVENTS):
            return []  # flash-hook or other non-DTMF events
        return [(EVENTS[ev.event], ev.duration // 8)]


def tone(digit: str, duration_ms: int = 100, amplitude: int = 6000) -> bytes:
    """In-band DTMF tone as s16le PCM at 8 kHz (fallback when no telephone-event)."""
    d = digit.upper()
    row = next(i for i, r in enumerate(KEYPAD) if d in r)
    f1, f2 = ROW_FREQS[row], COL_FREQS[KEYPAD[row].index(d)]
    n = 8 * duration_ms
    w1, w2 = 2 * math.pi * f1 / 8000, 2 * math.pi * f2 / 8000
    samples = array("h", (int(amplitude * (math.sin(w1 * i) + math.sin(w2 * i))) for i in range(n)))
    return samples.tobytes()


def goertzel_power(samples, freq: float, rate: int = 8000) -> float:
    """Signal power at one frequency over the block (Goertzel algorithm)."""
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


class GoertzelDetector:
    """In-band DTMF detector over 205-sample blocks (the classic 8 kHz block size,
    whose 39 Hz bins separate the DTMF rows and columns).

    A digit is reported once when the same pair is seen in two consecutive blocks
    (about 51 ms, above the 40 ms minimum of ITU-T Q.24) and must be released for two
    blocks before it can repeat. Thresholds: minimum level, the two tones carrying
    most of the block's energy, and a twist limit.
    """

    BLOCK = 205
    MIN_RMS = 300.0  # about -40 dBm0: quieter blocks are not analysed at all
    MIN_TONE_SHARE = 0.6  # share of the block energy in the two strongest tones
    MAX_TWIST = 6.3  # 8 dB either way

    def __init__(self) -> None:
        self._pending = array("h")
        self._candidate: str | None = None
        self._count = 0
        self._active: str | None = None
        self._silent = 0
        self._start_block = 0
        self._blocks = 0

    def feed(self, pcm: bytes) -> list[tuple[str, int]]:
        """Feed s16le PCM; return (digit, duration_ms-so-far) for newly detected digits."""
        self._pending.frombytes(pcm[: len(pcm) & ~1])
        out: list[tuple[str, int]] = []
        while len(self._pending) >= self.BLOCK:
            block = self._pending[: self.BLOCK]
            del self._pending[: self.BLOCK]
            self._blocks += 1
            digit = self._classify(block)
            if digit is not None and digit == self._candidate:
                self._count += 1
            else:
                self._candidate, self._count = digit, 1
            if digit is None:
                self._silent += 1
                if self._silent >= 2:
                    self._active = None
            else:
                self._silent = 0
            if digit is not None and self._count >= 2 and self._active != digit:
                self._active = digit
                out.append((digit, self._count * self.BLOCK // 8))
        return out

    def _classify(self, block) -> str | None:
        energy = sum(x * x for x in block)
        n = len(block)
        if energy < n * self.MIN_RMS**2:
            return None
        rows = [goertzel_power(block, f) for f in ROW_FREQS]
        cols = [goertzel_power(block, f) for f in COL_FREQS]
        r = max(range(4), key=rows.__getitem__)
        c = max(range(4), key=cols.__getitem__)
        # Goertzel power of a sine of amplitude A is about (A*N/2)^2; the block energy
        # is N*A^2/2, so 2*P/(N*energy) is the share of energy in that tone.
        share = 2.0 * (rows[r] + cols[c]) / (n * energy)
        if share < self.MIN_TONE_SHARE:
            return None
        if rows[r] > self.MAX_TWIST * cols[c] or cols[c] > self.MAX_TWIST * rows[r]:
            return None
        # The second-strongest row/column must be well below the strongest.
        if sorted(rows)[-2] * 6.3 > rows[r] or sorted(cols)[-2] * 6.3 > cols[c]:
            return None
        return KEYPAD[r][c]
