"""A flow's transfer step on the real stack: a SIP call handed over with REFER (SIPp as the far
end takes the REFER and reports the transferee's call with NOTIFY sipfrag). The same step on a
sandbox call is bridged: tests/e2e/test_dial_calls.py."""

from __future__ import annotations

import pytest

from services.lib import trunks
from tests.e2e.conftest import sip_voice_stack
from tests.e2e.test_dial_calls import projected, steps
from tests.interop.sip.conftest import rtp_listener, sipp  # noqa: F401 (fixtures)

pytestmark = pytest.mark.e2e

TARGET = "+15550111"  # what uas_refer.xml checks Refer-To against, as tel:+15550111


def flow(to: str) -> dict:
    return {"start": "hello", "steps": {
        "hello": {"kind": "say", "text": "Transferring you now.", "next": "agent"},
        "agent": {"kind": "transfer", "to": to, "on_failed": "sorry"},
        "sorry": {"kind": "say", "text": "Nobody could take your call. Goodbye."}}}


@pytest.fixture(scope="module")
async def voice(request, stack, tmp_path_factory):
    async for vs in sip_voice_stack(request, stack, tmp_path_factory):
        yield vs


def transfer_events(voice, cid: str) -> list[tuple[str, dict]]:
    return [(e.type, e.data) for e in voice.events[cid] if e.type.startswith("transfer.")]


async def test_a_sip_call_transferred_with_refer_ends_as_transferred(voice, kprod, sipp, rtp_listener):
    uas = sipp("uas_refer.xml", sets={"rtp_port": str(rtp_listener.port)})
    await trunks.set_trunk(voice.db, voice.account, host="127.0.0.1", port=uas.port)
    cid = await voice.place(kprod, carrier="sip", tts=None, flow=flow(TARGET))
    end = await voice.wait(cid, "terminal", timeout=90)
    assert end.type == "call.completed", voice.types(cid)
    assert end.data["reason"] == "transferred to tel:+15550111" and end.data["hangup_by"] == "system"
    seq = [t for t in voice.types(cid) if t.startswith("transfer.") or t in ("call.answered", "prompt.finished",
                                                                              "hangup.requested", "call.completed")]
    assert seq == ["call.answered", "prompt.finished", "transfer.requested", "transfer.started",
                   "transfer.progressed", "transfer.progressed", "transfer.completed", "call.completed"], seq
    evs = transfer_events(voice, cid)
    assert evs[1][1]["refer_to"] == "tel:+15550111"
    assert [(d.get("code"), d.get("reason")) for _, d in evs[2:]] == [(202, "Accepted"), (100, "Trying"), (200, "OK")]
    assert steps(voice, cid) == ["hello", "agent"]
    assert uas.wait() == 0, uas.errors()  # SIPp checked the REFER, got its NOTIFYs answered and our BYE
    call = await projected(voice, cid, "completed")
    assert call["end_reason"] == "transferred to tel:+15550111"


async def test_a_refused_transfer_leaves_the_call_in_the_flow(voice, kprod, sipp, rtp_listener):
    uas = sipp("uas_refer_busy.xml", sets={"rtp_port": str(rtp_listener.port)})
    await trunks.set_trunk(voice.db, voice.account, host="127.0.0.1", port=uas.port)
    cid = await voice.place(kprod, carrier="sip", tts=None, flow=flow(f"tel:{TARGET}"))
    end = await voice.wait(cid, "terminal", timeout=90)
    assert end.type == "call.completed", voice.types(cid)
    failed = await voice.wait(cid, "transfer.failed")
    assert (failed.data["code"], failed.data["reason"]) == (486, "Busy Here")
    assert steps(voice, cid) == ["hello", "agent", "sorry"]
    assert end.data["hangup_by"] == "caller"  # the flow ended: our BYE, after the sorry prompt
    assert uas.wait() == 0, uas.errors()
