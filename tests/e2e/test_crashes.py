"""SIGKILL a service mid-call and restart it: every call still ends exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from events.catalog import TERMINAL_EVENTS
from tests.e2e.conftest import CORE, _voice_stack

pytestmark = pytest.mark.e2e
LONG = " ".join(["Please stay on the line while we check a few things for you."] * 4)


@pytest.fixture(scope="module")
async def crashy(request, stack, tmp_path_factory, monkeypatch_module):
    async for vs in _voice_stack(request, stack, tmp_path_factory, CORE, speed=2.0):
        yield vs


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    mp.setenv("CANARY_GATEWAY_LEASE_S", "3")
    yield mp
    mp.undo()


def ids_of(vs, cid, type):
    return {e.id for e in vs.events[cid] if e.type == type}


async def test_orchestrator_sigkill_mid_call(crashy, kprod):
    calls = [await crashy.place(kprod, tts={"text": LONG}) for _ in range(4)]
    for cid in calls:
        await crashy.wait(cid, "call.answered", timeout=60)
    crashy.kill("services.orchestrator.service")
    await asyncio.sleep(1)
    crashy.start("services.orchestrator.service")
    for cid in calls:
        end = await crashy.wait(cid, "terminal", timeout=90)
        assert end.type == "call.completed", crashy.types(cid)
    await asyncio.sleep(2)  # late duplicates would show up now
    for cid in calls:
        terminal = [e for e in crashy.events[cid] if e.type in TERMINAL_EVENTS]
        assert len(terminal) == 1, crashy.types(cid)
        assert len(ids_of(crashy, cid, "dial.requested")) == 1  # re-published at most, never re-decided
        assert Counter(crashy.types(cid))["call.ringing"] == 1  # dialled once
        assert len(ids_of(crashy, cid, "hangup.requested")) == 1


async def test_gateway_sigkill_mid_call_ends_calls_as_failed(crashy, kprod):
    # The gather keeps each call up long after its prompt: still live when the gateway dies,
    # however late the kill comes.
    calls = [await crashy.place(kprod, tts={"text": LONG}, gather={"type": "dtmf", "timeout": 120})
             for _ in range(3)]
    for cid in calls:
        await crashy.wait(cid, "call.answered", timeout=60)
    crashy.kill("services.telephony.gateway")
    crashy.start("services.telephony.gateway")
    for cid in calls:
        end = await crashy.wait(cid, "terminal", timeout=60)
        assert end.type == "call.failed" and "gateway" in end.data["reason"]
    # and the restarted gateway places new calls normally
    cid = await crashy.place(kprod)
    assert (await crashy.wait(cid, "terminal", timeout=60)).type == "call.completed"
    for c in calls:
        assert sum(1 for e in crashy.events[c] if e.type in TERMINAL_EVENTS) == 1
