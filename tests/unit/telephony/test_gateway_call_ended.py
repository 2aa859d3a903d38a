"""A call that ends is marked ended in telephony_calls, before its tasks are cancelled.

Before, `Gateway.ended` scheduled the call's close (which cancels its event pump) and then
awaited the UPDATE from that same pump: the close cancelled it, the row stayed live, the
gateway renewed its lease for ever, and when that gateway died the next one's reaper ended
every call it had ever placed as `call.failed`, a second final status (found by the chaos run).
"""

from __future__ import annotations

import asyncio

from services.telephony.carrier import Answered, Ended, Ringing
from services.telephony.gateway import Gateway, LiveCall
from tests.unit.telephony.test_gateway_speech import FakeGateway, FakeSession, _dial


class SlowPool:
    """An UPDATE that takes a few loop turns, as a real round trip to Postgres does."""

    def __init__(self):
        self.done: list[tuple] = []

    async def execute(self, sql, *args):
        for _ in range(5):
            await asyncio.sleep(0)
        self.done.append((sql, args))


async def test_an_ended_call_is_marked_ended_in_postgres_although_its_pump_is_closed():
    gw, session = FakeGateway(), FakeSession()
    gw.conn, gw.calls = SlowPool(), {}
    gw.ended = Gateway.ended.__get__(gw)  # the real method, on the fake gateway
    call = LiveCall(gw, _dial(), session)
    gw.calls[call.dial.call_id] = call
    for ev in (Ringing(), Answered(), Ended("completed", "callee hung up", hangup_by="callee")):
        session.events.put_nowait(ev)
    await asyncio.wait_for(asyncio.gather(*call.tasks, return_exceptions=True), 10)
    assert [e.type for e in gw.producer.events][-1] == "call.completed"
    assert [a for sql, a in gw.conn.done if "ended = true" in sql] == [("call_s",)]
    assert call.dial.call_id not in gw.calls
    assert all(t.done() for t in call.tasks)  # and the call was closed after
