"""A flow's transfer step in the orchestrator. SIP: the instruction to the gateway (a REFER), and
its outcome moving the flow on (failed) or ending it (completed: the call ends by itself). The
sandbox: the target dialled as a second call the gateway bridges, its outcome reported as a
REFER's. Pure: decide() only."""

from __future__ import annotations

import pytest

from events import Envelope
from services.orchestrator.flow import leg_id
from services.orchestrator.state import Phase
from tests.unit.orchestrator.helpers import NO_MEDIA, Call, msg, types
from tests.unit.orchestrator.test_dial import leg_msg

FLOW = {"start": "agent", "steps": {
    "agent": {"kind": "transfer", "to": "tel:+15557770010", "on_failed": "bye"},
    "bye": {"kind": "hangup"}}}


def transferring() -> Call:
    c = Call()
    c(msg("PlaceCall", **{**NO_MEDIA, "carrier": "sip"}, flow=FLOW))
    c(msg("call.ringing"))
    d = c(msg("call.answered"))
    assert types(d) == ["flow.step.entered", "transfer.requested"]
    assert d.events[-1].data == {"to": "tel:+15557770010", "step": "agent", "tag": "agent#1"}
    assert c.state.flow.engine_state.waiting == "transfer"
    return c


def test_a_completed_transfer_ends_the_flow_and_the_call_ends_by_itself():
    c = transferring()
    assert c(msg("transfer.started", to="tel:+15557770010", step="agent", tag="agent#1")).events == []
    assert c(msg("transfer.completed", to="tel:+15557770010", code=200, step="agent", tag="agent#1")).events == []
    assert c.state.flow.engine_state.done and not c.state.hangup_sent
    d = c(msg("call.completed", reason="transferred to tel:+15557770010", hangup_by="system"))
    assert c.state.ended and "hangup.requested" not in types(d)


def test_a_failed_transfer_goes_on_at_on_failed():
    c = transferring()
    assert c(msg("transfer.failed", to="tel:+15557770010", code=486, step="agent", tag="agent#9")).events == []  # stale
    d = c(msg("transfer.failed", to="tel:+15557770010", code=486, reason="Busy Here", step="agent", tag="agent#1"))
    assert types(d) == ["flow.step.entered", "hangup.requested"]
    assert d.events[0].data == {"step": "bye", "kind": "hangup"}


# --- the sandbox: bridged ----------------------------------------------------------------

def sandbox_transferring() -> tuple[Call, Envelope]:
    """A sandbox call answered, its flow at the transfer step; returns the target leg's creation."""
    c = Call()
    c(msg("PlaceCall", **NO_MEDIA, flow=FLOW))
    c(msg("call.ringing"))
    d = c(msg("call.answered"))
    assert types(d) == ["flow.step.entered", "transfer.started", "call.leg.requested"]
    child = leg_id("call_1", "agent#1")
    assert d.events[1].data == {"to": "tel:+15557770010", "refer_to": None, "child_call_id": child,
                                "step": "agent", "tag": "agent#1"}
    leg = d.events[2]
    assert leg.call_id == child
    # The tel: URI is dialled as its number, from the call's own number, with the call's ring timeout.
    assert leg.data == {"parent_call_id": "call_1", "carrier": "sandbox", "to": "+15557770010",
                        "from": "+15559876543", "timeout": 30, "step": "agent", "tag": "agent#1", "transfer": True}
    assert c.state.flow.engine_state.waiting == "transfer"
    return c, leg


def test_a_sandbox_transfer_places_the_target_as_a_leg_that_tells_its_parent_it_is_a_transfer():
    _, leg = sandbox_transferring()
    target = Call()
    d = target(leg)
    assert types(d) == ["call.queued", "dial.requested"]
    assert d.events[1].data["parent_call_id"] == "call_1" and d.events[1].data["to"] == "+15557770010"
    d = target(leg_msg(leg, "call.answered"))
    assert [(e.type, e.call_id) for e in d.events] == [("dial.answered", "call_1")]
    assert d.events[0].data == {"child_call_id": leg.call_id, "step": "agent", "tag": "agent#1", "transfer": True}


def test_the_target_answering_completes_the_transfer_and_its_hangup_ends_the_call():
    parent, leg = sandbox_transferring()
    target = Call()
    target(leg)
    answered = target(leg_msg(leg, "call.answered")).events[0]
    d = parent(answered)
    assert types(d) == ["transfer.completed"]
    assert d.events[0].data == {"to": "tel:+15557770010", "code": 200, "reason": "OK", "step": "agent",
                                "tag": "agent#1"}
    assert parent.state.flow.engine_state.done and not parent.state.hangup_sent  # still up: bridged
    assert parent(answered).events == []  # redelivered
    assert parent(d.events[0]).events == []  # its own transfer.completed coming back
    ended = target(leg_msg(leg, "call.completed", reason="callee hung up")).events[-1]
    assert ended.type == "dial.ended" and ended.data["outcome"] == "completed" and ended.data["transfer"]
    d = parent(ended)
    assert types(d) == ["hangup.requested"] and d.events[0].data == {"reason": "transfer"}
    assert parent(ended).events == []  # one hangup


@pytest.mark.parametrize("end,code,next_step", [("call.busy", 486, "bye"), ("call.no-answer", 480, "bye"),
                                                ("call.failed", 503, "bye"), ("call.canceled", 480, "bye")])
def test_a_target_that_does_not_answer_fails_the_transfer_and_the_flow_goes_on(end, code, next_step):
    parent, leg = sandbox_transferring()
    target = Call()
    target(leg)
    d = target(leg_msg(leg, end, reason="whatever the carrier said"))
    assert target.state.phase is Phase.ENDED
    ended = d.events[-1]
    d = parent(ended)
    assert types(d) == ["transfer.failed", "flow.step.entered", "hangup.requested"]
    assert d.events[0].data == {"to": "tel:+15557770010", "code": code, "reason": "whatever the carrier said",
                                "step": "agent", "tag": "agent#1"}
    assert d.events[1].data["step"] == next_step
    assert parent(ended).events == []  # the same outcome again: the flow moved on already
