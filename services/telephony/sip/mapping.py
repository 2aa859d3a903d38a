"""Final SIP response -> public call status (the mapping the API documents)."""

from __future__ import annotations

from services.telephony.carrier import Ended

BUSY_CODES = frozenset({486, 600})
NO_ANSWER_CODES = frozenset({408, 480})


def map_final_response(code: int, reason: str, *, canceled_by: str | None = None) -> Ended:
    """Map a final non-2xx response to INVITE onto Ended.

    ``canceled_by`` says why we sent CANCEL, if we did: "timeout" (ring timeout, so a
    487 means nobody answered) or "hangup" (the caller gave up: canceled).
    """
    if code == 487 and canceled_by == "timeout":
        return Ended("no-answer", reason or "Request Terminated", code, "system")
    if code == 487 and canceled_by == "hangup":
        return Ended("canceled", reason or "Request Terminated", code, "caller")
    if code in BUSY_CODES:
        return Ended("busy", reason, code, "callee")
    if code in NO_ANSWER_CODES:
        return Ended("no-answer", reason, code, "callee")
    return Ended("failed", reason, code, "system" if code < 600 else "callee")
