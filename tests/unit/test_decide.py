"""The call state machine, without a broker: decide(state, message, now)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from events import Envelope
from services.orchestrator.decide import decide
from services.orchestrator.outputs import CancelTimer
from tests.unit.orchestrator.helpers import MENU

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
REQ = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Hi", "voice": "en-US-Neural2-F"},
       "timeout": 30, "carrier": "sandbox"}


def msg(type, **data):
    return Envelope(type=type, call_id="call_1", account_id="acct_1", data=data)


class Run:
    """Feed messages through decide, keeping state; collect emitted types."""

    def __init__(self):
        self.state = None
        self.out = []
        self.timers = {}

    def __call__(self, m, now=NOW, **kw):
        d = decide(self.state, m, now, **kw)
        self.state = d.state
        self.out.extend(d.events)
        for t in d.timers:
            if isinstance(t, CancelTimer):
                self.timers.pop(t.name, None)
            else:
                self.timers[t.name] = t
        return [e.type for e in d.events]

    def last(self, type):
        return [e for e in self.out if e.type == type][-1]


def test_full_script_play_gather_hangup():
    r = Run()
    req = {**REQ, "gather": {"type": "dtmf", "num_digits": 4, "finish_on_key": "#", "timeout": 10}, "record": True,
           "recording_channels": "dual", "transcribe": True}
    assert r(msg("PlaceCall", **req)) == ["call.queued", "tts.requested", "dial.requested"]
    assert "ring_timeout" in r.timers
    assert r(msg("call.ringing")) == []
    assert r(msg("call.answered")) == ["record.requested"]  # prompt not rendered yet: wait for it
    assert r.last("record.requested").data == {"channels": "dual", "transcribe": True}
    assert "ring_timeout" not in r.timers
    assert r(msg("tts.rendered", audio_ref="sha256:x.wav", duration_ms=900)) == ["play.requested"]
    assert r.last("play.requested").data["barge_in"] is True
    assert r(msg("prompt.finished", interrupted=False)) == ["gather.requested"]
    assert r.last("gather.requested").data["num_digits"] == 4
    assert r(msg("gather.completed", digits="1234", finished_on_key="#")) == ["hangup.requested"]
    assert r(msg("call.completed")) == []
    assert r.state.ended and r.timers == {}


def test_prompt_rendered_before_answer_plays_on_answer():
    r = Run()
    r(msg("PlaceCall", **REQ))
    assert r(msg("tts.rendered", audio_ref="sha256:x.wav", duration_ms=900)) == []
    assert r(msg("call.answered")) == ["play.requested"]
    assert r(msg("prompt.finished")) == ["hangup.requested"]


def test_audio_url_and_media_failure_end_the_call_with_reason():
    r = Run()
    req = {k: v for k, v in REQ.items() if k != "tts"} | {"audio_url": "https://example.com/a.mp3"}
    assert r(msg("PlaceCall", **req)) == ["call.queued", "audio.requested", "dial.requested"]
    r(msg("call.answered"))
    assert r(msg("audio.failed", reason="HTTP 404")) == ["hangup.requested"]
    assert r.last("hangup.requested").data == {"reason": "HTTP 404", "status": "failed"}


def test_rejected_command_emits_call_rejected_only():
    r = Run()
    errs = [{"code": "unverified_number", "field": "from", "message": "not verified"}]
    assert r(msg("PlaceCall", **REQ), validation_errors=errs) == ["call.rejected"]
    assert r.last("call.rejected").data == {"errors": errs}
    assert r(msg("call.answered")) == []


def test_duplicate_place_call_is_ignored():
    r = Run()
    m = msg("PlaceCall", **REQ)
    r(m)
    assert r(m) == []


def test_outputs_have_deterministic_ids():
    m = msg("PlaceCall", **REQ)
    a, b = decide(None, m, NOW), decide(None, m, NOW)
    assert [e.id for e in a.events] == [e.id for e in b.events]
    assert all(e.causation_id == m.id for e in a.events)


def test_pacing_queues_calls_over_the_rate():
    r = Run()
    slot = NOW + timedelta(seconds=2)
    d = decide(None, msg("PlaceCall", **REQ), NOW, pacing_slot=slot, cps=10)
    assert [e.type for e in d.events] == ["call.queued", "tts.requested"]  # no dial yet
    assert [(t.name, t.due) for t in d.timers] == [("pace", slot)]
    assert d.pacing_next == slot + timedelta(seconds=0.1)
    fired = decide(d.state, msg("timer.fired", timer="pace", token="x"), slot)
    assert [e.type for e in fired.events] == ["dial.requested"]


def test_hangup_while_waiting_for_pacing_cancels_without_dialling():
    d = decide(None, msg("PlaceCall", **REQ), NOW, pacing_slot=NOW + timedelta(seconds=5))
    d2 = decide(d.state, msg("HangupCall", reason="api"), NOW)
    assert [e.type for e in d2.events] == ["call.canceled"]
    d3 = decide(d2.state, msg("timer.fired", timer="pace"), NOW)
    assert d3.events == []


def test_hangup_of_a_dialled_call_goes_to_the_gateway_once():
    r = Run()
    r(msg("PlaceCall", **REQ))
    assert r(msg("HangupCall")) == ["hangup.requested"]
    assert r(msg("HangupCall")) == []


def test_ring_timeout_safety_net_and_lost_gateway():
    r = Run()
    r(msg("PlaceCall", **REQ))
    assert r(msg("timer.fired", timer="ring_timeout")) == ["hangup.requested"]
    assert r.last("hangup.requested").data["status"] == "no-answer"
    assert r(msg("timer.fired", timer="hangup_grace")) == ["call.failed"]
    assert r.state.ended


def test_flow_runs_step_by_step():
    r = Run()
    req = {k: v for k, v in REQ.items() if k != "tts"} | {"flow": MENU}
    assert r(msg("PlaceCall", **req)) == ["call.queued", "dial.requested"]
    out = r(msg("call.answered"))
    assert out == ["flow.step.entered", "tts.requested"]
    tag = r.last("tts.requested").data["step"]
    assert tag == "welcome#1"
    assert r(msg("tts.rendered", audio_ref="sha256:w.wav", duration_ms=500, step="stale#0")) == []
    assert r(msg("tts.rendered", audio_ref="sha256:w.wav", duration_ms=500, step=tag)) == ["play.requested"]
    assert r(msg("prompt.finished", interrupted=False, step=tag)) == ["flow.step.entered", "tts.requested"]
    tag = r.last("tts.requested").data["step"]
    r(msg("tts.rendered", audio_ref="sha256:m.wav", duration_ms=500, step=tag))
    assert r(msg("prompt.finished", step=tag)) == ["gather.requested"]
    assert r.last("gather.requested").data["step"] == "menu"
    # 9 repeats the menu (a new entry tag), 1 goes to sales
    assert r(msg("gather.completed", digits="9", step="menu")) == ["flow.step.entered", "tts.requested"]
    assert r.last("tts.requested").data["step"] == "menu#3"
    r(msg("tts.rendered", audio_ref="sha256:m.wav", duration_ms=500, step="menu#3"))
    r(msg("prompt.finished", step="menu#3", interrupted=True))  # barge-in skips the rest
    assert r(msg("gather.completed", digits="1", step="menu")) == ["flow.step.entered", "tts.requested"]
    r(msg("tts.rendered", audio_ref="sha256:s.wav", duration_ms=500, step="sales#4"))
    assert r(msg("prompt.finished", step="sales#4")) == ["flow.step.entered", "hangup.requested"]
    path = [e.data["step"] for e in r.out if e.type == "flow.step.entered"]
    assert path == ["welcome", "menu", "menu", "sales", "bye"]
    ids = [e.id for e in r.out]
    assert len(ids) == len(set(ids))  # every output has its own deterministic id


def test_flow_gather_timeout_reprompts_then_leaves():
    r = Run()
    req = {k: v for k, v in REQ.items() if k != "tts"} | {"flow": MENU}
    r(msg("PlaceCall", **req))
    r(msg("call.answered"))
    r(msg("tts.rendered", audio_ref="sha256:w.wav", duration_ms=1, step="welcome#1"))
    r(msg("prompt.finished", step="welcome#1"))
    r(msg("tts.rendered", audio_ref="sha256:m.wav", duration_ms=1, step="menu#2"))
    r(msg("prompt.finished", step="menu#2"))
    assert r(msg("gather.timeout", step="menu")) == ["flow.step.entered", "tts.requested"]  # retry 1
    r(msg("tts.rendered", audio_ref="sha256:m.wav", duration_ms=1, step="menu#3"))
    r(msg("prompt.finished", step="menu#3"))
    assert r(msg("gather.timeout", step="menu")) == ["flow.step.entered", "hangup.requested"]
