"""DTMF collection rules, as a small state object driven by digits and the clock.

Ends on `num_digits`, on `finish_on_key`, or on a timeout: the first-digit timeout
(`timeout`, from the start of the gather) and the inter-digit timeout
(`inter_digit_timeout`, default = `timeout`) after each key.

With both `num_digits` and `finish_on_key` set (the docs' "4-digit PIN followed by the
pound key"), the last digit does not end the gather at once: the finish key pressed
within the inter-digit timeout after it ends it and is reported in `finished_on_key`.
Without it the gather still completes with the digits when that timeout runs out, and a
further non-finish key completes it at once (that key is not one of its digits).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Collector:
    num_digits: int | None = None
    finish_on_key: str = "#"
    timeout: float = 5.0
    inter_digit_timeout: float | None = None
    digits: str = ""
    finished_on_key: str | None = None
    done: bool = False
    awaiting_finish: bool = False  # num_digits reached; the finish key may still follow
    leftover: str = ""  # the key that ended an awaiting gather: type-ahead for the next one
    _deadline: float = field(default=0.0)

    def start(self, now: float) -> None:
        self._deadline = now + self.timeout

    def press(self, digit: str, now: float) -> bool:
        """Feed a key; True when the gather is complete."""
        if self.done:
            return True
        if self.finish_on_key and digit == self.finish_on_key:
            self.finished_on_key, self.done = digit, True
            return True
        if self.awaiting_finish:  # a key beyond num_digits that is not the finish key
            self.leftover, self.done = digit, True
            return True
        self.digits += digit
        if self.num_digits and len(self.digits) >= self.num_digits:
            if not self.finish_on_key:
                self.done = True
                return True
            self.awaiting_finish = True
        self._deadline = now + (self.inter_digit_timeout or self.timeout)
        return False

    def extend(self, until: float) -> None:
        """Hold the timeout off (speech in progress) until `until`."""
        self._deadline = max(self._deadline, until)

    def deadline(self) -> float:
        return self._deadline

    def outcome(self) -> str:
        """'completed' if any input (or the finish key) arrived, else 'timeout'."""
        return "completed" if (self.digits or self.finished_on_key) else "timeout"
