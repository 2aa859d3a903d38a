"""A call's carrier events wait in a bounded buffer while the gateway cannot publish them
(a Kafka outage). Full, it drops the newest event and says so, but never the call's end:
a call is always reported ended, however long Kafka was away."""

from __future__ import annotations

from services.telephony import carrier
from services.telephony.carrier import Answered, DtmfReceived, Ended, Ringing, offer


class Log:
    def __init__(self):
        self.errors = []

    def error(self, msg, **kw):
        self.errors.append((msg, kw))


async def test_a_full_buffer_drops_digits_but_keeps_the_end(monkeypatch):
    monkeypatch.setattr(carrier, "EVENT_BUFFER", 3)
    q, log = carrier.event_queue(), Log()
    assert q.maxsize == 3
    assert offer(q, Ringing(), log) and offer(q, Answered(), log) and offer(q, DtmfReceived("1", 100, "sandbox"), log)
    assert offer(q, DtmfReceived("2", 100, "sandbox"), log) is False  # full: dropped, and said
    assert log.errors == [("call event buffer full: event dropped", {"dropped": "DtmfReceived", "buffer": 3})]
    assert offer(q, Ended("completed", "callee hung up"), log) is True  # the end takes the oldest's place
    got = [q.get_nowait() for _ in range(q.qsize())]
    assert [type(e).__name__ for e in got] == ["Answered", "DtmfReceived", "Ended"]
    assert log.errors[-1][1]["dropped"] == "Ringing"

