"""The stored form of a call's state: JSON round trip, and rows written by the dict-based code."""

from __future__ import annotations

import copy
from datetime import timedelta

import orjson
import pytest

from events import derive_id
from services.lib.flows import engine as fe
from services.orchestrator.decide import decide
from services.orchestrator.state import CallState, FlowMedia, FlowRun, GatherSpec, Phase
from tests.unit.orchestrator.helpers import MENU, NO_MEDIA, NOW, REQ, Call, msg, types


def stored(s: CallState) -> CallState:
    """Through the bytes Postgres keeps (the service's jsonb codec is orjson)."""
    return CallState.from_json(orjson.loads(orjson.dumps(s.to_json())))


def test_phase_values_are_the_stored_strings():
    assert [p.value for p in Phase] == ["new", "rejected", "queued", "dialing", "ringing", "in-progress", "playing",
                                        "prompted", "gathering", "gathered", "updated", "ended"]


def scripts():
    """(name, state) for every state a few whole calls go through."""
    gather = {**REQ, "gather": {"num_digits": 1, "hints": ["yes"]}, "record": True}
    runs = {
        "script": [("PlaceCall", gather), ("call.ringing", {}), ("call.answered", {}),
                   ("tts.rendered", {"audio_ref": "sha256:p.wav"}), ("prompt.finished", {}),
                   ("gather.completed", {"digits": "1"}), ("call.completed", {})],
        "plain": [("PlaceCall", REQ), ("call.answered", {}), ("tts.rendered", {"audio_ref": "sha256:p.wav"}),
                  ("prompt.finished", {})],
        "queued": [("PlaceCall", REQ), ("HangupCall", {})],
        "flow": [("PlaceCall", {**NO_MEDIA, "flow": MENU}), ("call.answered", {}),
                 ("tts.rendered", {"audio_ref": "sha256:w.wav", "step": "welcome#1"}),
                 ("prompt.finished", {"step": "welcome#1"}),
                 ("tts.rendered", {"audio_ref": "sha256:m.wav", "step": "menu#2"}),
                 ("prompt.finished", {"step": "menu#2"}), ("gather.completed", {"digits": "1", "step": "menu"}),
                 ("call.completed", {})],
        "rejected": [("PlaceCall", REQ)],
        "updated": [("PlaceCall", {**REQ, "record": True}), ("call.answered", {}),
                    ("tts.rendered", {"audio_ref": "sha256:p.wav"}),
                    ("UpdateCall", {"tts": {"text": "Hold on."}, "interrupt": False}),
                    ("UpdateCall", {"recording": "pause"}), ("prompt.finished", {}),
                    ("UpdateCall", {"tts": {"text": "Bye."}})],
    }
    yield "new", CallState.new("call_1", "acct_1")
    for name, inputs in runs.items():
        c = Call()
        for i, (t, data) in enumerate(inputs):
            kw = {}
            if name == "queued" and t == "PlaceCall":
                kw["pacing_slot"] = NOW + timedelta(seconds=5)
            if name == "rejected":
                kw["validation_errors"] = [{"code": "x", "field": "to", "message": "no"}]
            c(msg(t, **data), **kw)
            yield f"{name}-{i}-{c.state.phase}", c.state


@pytest.mark.parametrize("name,state", list(scripts()))
def test_round_trip_through_json(name, state):
    assert stored(state) == state
    assert stored(stored(state)).to_json() == state.to_json()


def test_every_phase_is_reached_by_the_scripts():
    assert {s.phase for _, s in scripts()} == set(Phase)


@pytest.mark.parametrize("name,state", list(scripts()))
def test_flags_written_for_readers_of_the_earlier_layout(name, state):
    d = state.to_json()
    assert d["ended"] is state.ended and d["hangup_sent"] is state.hangup_sent and d["phase"] == state.phase.value
    if not state.ended:
        assert (d["answered"], d["dialed"], d["played"], d["gathering"]) == (
            state.answered, state.dialed, state.played, state.phase is Phase.GATHERING)


# --- rows as the dict-based orchestrator wrote them ---------------------------------------

REQUEST = {"to": "+15551234567", "from": "+15559876543", "tts": {"text": "Hi", "voice": "en-US-Neural2-F"},
           "timeout": 30, "carrier": "sandbox", "created_at": "2026-01-01T00:00:00.000Z"}
LEGACY_QUEUED = {
    "call_id": "call_1", "account_id": "acct_1", "phase": "queued", "request": REQUEST, "audio_ref": None,
    "media_failed": None, "answered": False, "dialed": False, "played": False, "gathering": False,
    "hangup_sent": False, "ended": False, "seen": 1}
LEGACY_PLAYING = {
    "call_id": "call_1", "account_id": "acct_1", "phase": "playing",
    "request": {**REQUEST, "gather": {"num_digits": 2}}, "audio_ref": "sha256:a.wav", "media_failed": None,
    "answered": True, "dialed": True, "played": True, "gathering": False, "hangup_sent": False, "ended": False,
    "seen": 4}
FLOW_REQUEST = {"to": "+15551234567", "from": "+15559876543", "timeout": 30, "carrier": "sandbox", "flow": MENU,
                "record": True, "created_at": "2026-01-01T00:00:00.000Z"}
LEGACY_FLOW = {
    "call_id": "call_1", "account_id": "acct_1", "phase": "in-progress", "request": FLOW_REQUEST, "audio_ref": None,
    "media_failed": None, "answered": True, "dialed": True, "played": False, "gathering": False,
    "hangup_sent": False, "ended": False, "seen": 5,
    "flow": {"def": MENU,
             "state": {"step": "menu", "waiting": "gather", "retries": 0, "entered": 2, "path": ["welcome", "menu"],
                       "digits": None, "speech": None, "dynamic": {}, "done": False},
             "media": {"tag": "menu#2", "queue": [{"kind": "say", "text": "Press 1 for sales, 9 to repeat.",
                                                   "voice": "en-US-Neural2-F"}],
                       "then": "gather", "barge_in": True, "waiting": "play"},
             "gather": {"type": "dtmf", "num_digits": 1, "finish_on_key": "#", "timeout": 5,
                        "inter_digit_timeout": None, "hints": None, "language": None, "step": "menu"}},
    "recording": True, "flow_seq": 6}
LEGACY_ENDED = {**LEGACY_PLAYING, "phase": "ended", "ended": True, "seen": 6}
LEGACY_BEFORE_ANSWER = {**LEGACY_FLOW, "phase": "ringing", "answered": False, "seen": 2,
                        "flow": {"def": MENU, "state": {}}}
del LEGACY_BEFORE_ANSWER["recording"], LEGACY_BEFORE_ANSWER["flow_seq"]


@pytest.mark.parametrize("row", [LEGACY_QUEUED, LEGACY_PLAYING, LEGACY_FLOW, LEGACY_BEFORE_ANSWER],
                         ids=["queued", "playing", "flow", "flow-before-answer"])
def test_a_live_legacy_row_loads_and_is_written_back_identically(row):
    s = CallState.from_json(copy.deepcopy(row))
    assert s.to_json() == row
    assert stored(s) == s


def test_a_legacy_flow_row_loads_into_typed_values():
    s = CallState.from_json(LEGACY_FLOW)
    assert s.phase is Phase.IN_PROGRESS and s.answered and s.recording and not s.hangup_sent
    assert s.flow == FlowRun(
        MENU, fe.FlowState(step="menu", waiting="gather", entered=2, path=("welcome", "menu")),
        FlowMedia("menu#2", (fe.Say("Press 1 for sales, 9 to repeat.", "en-US-Neural2-F"),), "gather", True, "play"),
        GatherSpec(num_digits=1, step="menu"), seq=6)
    assert CallState.from_json(LEGACY_BEFORE_ANSWER).flow == FlowRun(MENU)


def test_a_legacy_row_decides_on_where_it_stopped():
    m = msg("prompt.finished", step="menu#2")
    d = decide(CallState.from_json(LEGACY_FLOW), m, NOW)
    # the flow's output count carries on from the stored one, so ids match the old code's
    assert types(d) == ["gather.requested"] and d.events[0].id == derive_id(m.id, "flow:7:gather.requested")
    d = decide(CallState.from_json(LEGACY_PLAYING), msg("prompt.finished"), NOW)
    assert d.state.phase is Phase.GATHERING and types(d) == ["gather.requested"]
    d = decide(CallState.from_json(LEGACY_QUEUED), msg("timer.fired", timer="pace"), NOW)
    assert d.state.phase is Phase.DIALING and types(d) == ["dial.requested"]


def test_a_legacy_ended_row_stays_ended():
    s = CallState.from_json(LEGACY_ENDED)
    assert s.phase is Phase.ENDED and s.ended
    assert decide(s, msg("call.answered"), NOW).outputs == ()
    d = s.to_json()
    assert d["ended"] is True and d["phase"] == "ended"
    assert "answered" not in d  # the phase-implied flags are only written for live calls


def test_the_engine_state_is_stored_as_the_engine_writes_it():
    flow = {"start": "w", "steps": {"w": {"kind": "webhook", "url": "https://example.com/h", "next": "bye"},
                                    "bye": {"kind": "hangup"}}}
    engine, _ = fe.start(flow)
    engine, _ = fe.on_input(flow, engine, fe.WebhookAnswered(steps=({"kind": "say", "text": "hi"},), step="w"))
    assert engine.dynamic and engine.path == ("w", "w.0")
    for e in (engine, fe.FlowState()):
        assert FlowRun(flow, e).to_json()["state"] == e.to_dict()
        assert FlowRun.from_json(FlowRun(flow, e).to_json()).engine == e
