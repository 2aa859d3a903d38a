"""A Kafka outage does not end the calls on a gateway: their events wait and go out after.

Before, the first failed publish killed the call's event pump silently: the answer and
the hangup of a call that went on fine were never reported.
"""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaConnectionError

from services.telephony.carrier import Answered, Ended, Ringing
from services.telephony.gateway import LiveCall
from tests.unit.telephony.test_gateway_speech import FakeGateway, FakeProducer, FakeSession, _dial


class DownProducer(FakeProducer):
    """Refuses every send while `down` is set, like a producer whose broker is gone."""

    def __init__(self):
        super().__init__()
        self.down = True
        self.refused = 0

    async def send(self, topic, value, key=None, headers=None):
        if self.down:
            self.refused += 1
            raise KafkaConnectionError("broker unreachable")
        return await super().send(topic, value, key=key, headers=headers)


async def test_events_of_a_call_during_a_kafka_outage_are_delivered_in_order_once_it_is_back():
    gw, session = FakeGateway(), FakeSession()
    gw.producer = DownProducer()
    call = LiveCall(gw, _dial(), session)
    ended = asyncio.Event()

    async def on_ended(c):
        ended.set()

    gw.ended = on_ended
    try:
        for ev in (Ringing(), Answered(), Ended("completed", "callee hung up", hangup_by="callee")):
            session.events.put_nowait(ev)
        for _ in range(100):
            if gw.producer.refused >= 2:  # retried, not given up
                break
            await asyncio.sleep(0.05)
        assert gw.producer.refused >= 2 and gw.producer.events == []
        assert not call.tasks[0].done(), "the pump died with the broker"
        gw.producer.down = False
        await asyncio.wait_for(ended.wait(), 10)
        types = [e.type for e in gw.producer.events]
        assert types == ["call.ringing", "call.answered", "call.completed"], types
        assert len({e.id for e in gw.producer.events}) == 3
    finally:
        call.close()
