"""decide() with machine detection: the dial carries it, a synchronous call waits for it."""

from __future__ import annotations

from services.orchestrator.state import CallState, Phase
from tests.unit.orchestrator.helpers import REQ, Call, msg, types

AMD = {**REQ, "machine_detection": "detect_message_end", "machine_detection_timeout": 20}
FLOW = {"start": "who", "steps": {
    "who": {"kind": "answered_by", "branches": {"human": "hi", "machine": "vm"}, "default": "hi"},
    "hi": {"kind": "say", "text": "Hello there."},
    "vm": {"kind": "say", "text": "Please call us back."}}}


def answered(req: dict) -> Call:
    c = Call()
    c(msg("PlaceCall", **req))
    c(msg("call.ringing"))
    c(msg("tts.rendered", audio_ref="sha256:p.wav"))
    return c


def test_the_dial_asks_the_gateway_to_detect():
    c = Call()
    d = c(msg("PlaceCall", **AMD))
    dial = [e for e in d.events if e.type == "dial.requested"][0]
    assert dial.data["machine_detection"] == {"mode": "detect_message_end", "timeout": 20}
    d = Call()(msg("PlaceCall", **REQ))
    assert "machine_detection" not in [e for e in d.events if e.type == "dial.requested"][0].data


def test_synchronous_detection_holds_the_prompt_until_the_result():
    c = answered(AMD)
    d = c(msg("call.answered"))
    assert "play.requested" not in types(d) and c.state.waiting_for_detection
    d = c(msg("machine_detection.completed", answered_by="machine_end_beep", decision_ms=6100))
    assert types(d) == ["play.requested"] and c.state.answered_by == "machine_end_beep"
    assert c.state.phase is Phase.PLAYING
    # A duplicate result changes nothing.
    assert types(c(msg("machine_detection.completed", answered_by="human", decision_ms=1))) == []
    assert c.state.answered_by == "machine_end_beep"


def test_asynchronous_detection_does_not_hold_the_prompt():
    c = answered({**AMD, "async_amd": True})
    assert types(c(msg("call.answered"))) == ["play.requested"]
    d = c(msg("machine_detection.completed", answered_by="human", decision_ms=1500))
    assert types(d) == [] and c.state.answered_by == "human"


def test_a_call_without_detection_plays_at_once_and_ignores_a_stray_result():
    c = answered(REQ)
    assert types(c(msg("call.answered"))) == ["play.requested"]
    assert not c.state.detecting


def test_a_result_after_the_hangup_is_recorded_but_starts_nothing():
    c = answered(AMD)
    c(msg("call.answered"))
    c(msg("HangupCall", reason="api"))
    d = c(msg("machine_detection.completed", answered_by="human", decision_ms=900))
    assert types(d) == [] and c.state.answered_by == "human"


def test_a_result_without_answered_by_counts_as_unknown():
    """The consumer validates payloads first; decide stays total anyway."""
    c = answered(AMD)
    c(msg("call.answered"))
    c(msg("machine_detection.completed", decision_ms=900))
    assert c.state.answered_by == "unknown" and c.state.phase is Phase.PLAYING


def test_a_synchronous_flow_starts_on_the_result_and_branches_on_it():
    c = answered({**{k: v for k, v in AMD.items() if k != "tts"}, "flow": FLOW})
    d = c(msg("call.answered"))
    assert "flow.step.entered" not in types(d)
    d = c(msg("machine_detection.completed", answered_by="machine_end_silence", decision_ms=7000))
    steps = [e.data["step"] for e in d.events if e.type == "flow.step.entered"]
    said = [e.data["text"] for e in d.events if e.type == "tts.requested"]
    assert steps == ["who", "vm"] and said == ["Please call us back."]


def test_an_asynchronous_flow_waits_at_the_answered_by_step_only():
    c = answered({**{k: v for k, v in AMD.items() if k != "tts"}, "flow": FLOW, "async_amd": True})
    d = c(msg("call.answered"))
    assert [e.data["step"] for e in d.events if e.type == "flow.step.entered"] == ["who"]
    assert c.state.flow.engine.waiting == "detection"
    d = c(msg("machine_detection.completed", answered_by="human", decision_ms=1400))
    assert [e.data["step"] for e in d.events if e.type == "flow.step.entered"] == ["hi"]


def test_the_result_survives_storage():
    c = answered(AMD)
    c(msg("call.answered"))
    c(msg("machine_detection.completed", answered_by="fax", decision_ms=500))
    assert CallState.from_json(c.state.to_json()) == c.state
    assert "answered_by" not in answered(REQ).state.to_json()  # the stored layout of before without it


def test_the_detection_timer_is_armed_on_answer_and_disarmed_by_the_result():
    from datetime import timedelta

    from services.orchestrator.decide import DETECTION_GRACE_S
    from tests.unit.orchestrator.helpers import NOW, timers

    c = answered(AMD)
    d = c(msg("call.answered"))
    assert ("machine_detection", NOW + timedelta(seconds=20 + DETECTION_GRACE_S)) in timers(d)
    d = c(msg("machine_detection.completed", answered_by="human", decision_ms=1500))
    assert ("machine_detection", None) in timers(d)
    assert "machine_detection" not in [name for name, _ in timers(answered(REQ)(msg("call.answered")))]


def test_no_result_from_the_gateway_is_unknown_when_the_timer_fires_and_the_call_goes_on():
    c = answered(AMD)
    c(msg("call.answered"))
    d = c(msg("timer.fired", timer="machine_detection", token="t"))
    assert types(d) == ["machine_detection.completed", "play.requested"]
    assert d.events[0].data == {"answered_by": "unknown", "mode": "detect_message_end", "decision_ms": 25_000}
    assert c.state.answered_by == "unknown"
    # The gateway's late result (and the orchestrator's own event read back) change nothing.
    assert types(c(msg("machine_detection.completed", answered_by="human", decision_ms=1))) == []
    assert c.state.answered_by == "unknown"
    # A timer after the result is a no-op.
    assert types(c(msg("timer.fired", timer="machine_detection", token="t"))) == []
