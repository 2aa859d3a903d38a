"""A flow's transfer step in the orchestrator: the instruction to the gateway, and its outcome
moving the flow on (failed) or ending it (completed: the call ends by itself). Pure: decide() only."""

from __future__ import annotations

from tests.unit.orchestrator.helpers import NO_MEDIA, Call, msg, types

FLOW = {"start": "agent", "steps": {
    "agent": {"kind": "transfer", "to": "tel:+15557770010", "on_failed": "bye"},
    "bye": {"kind": "hangup"}}}


def transferring() -> Call:
    c = Call()
    c(msg("PlaceCall", **NO_MEDIA, flow=FLOW))
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
