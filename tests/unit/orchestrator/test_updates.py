"""UpdateCall in the pure state machine: each kind of change, what it refuses, and its media."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.orchestrator.decide import MAX_CALL_S
from services.orchestrator.state import Phase
from tests.unit.orchestrator.helpers import MENU, NO_MEDIA, NOW, REQ, Call, msg, timers, types
from tests.unit.orchestrator.test_transitions import at_menu_gather, call_in, ignored

OTHER = {"start": "hello", "steps": {"hello": {"kind": "say", "text": "Redirected.", "next": "ask"},
                                     "ask": {"kind": "gather", "num_digits": 1, "timeout": 5,
                                             "prompt": {"kind": "say", "text": "Press a key."},
                                             "branches": {"1": "bye"}, "default": "bye", "on_timeout": "bye"},
                                     "bye": {"kind": "hangup"}}}


def update(**data):
    return msg("UpdateCall", **data)


def updated(d):
    """The call.updated fact of a decision (always its first event)."""
    assert d.events and d.events[0].type == "call.updated", types(d)
    return d.events[0].data


def tag_of(d) -> str:
    return next(e.data["step"] for e in d.events if e.type in ("tts.requested", "audio.requested"))


# --- play now ------------------------------------------------------------------------------

def test_play_with_interrupt_stops_the_script_and_hangs_up_after_the_new_audio():
    c = call_in(Phase.PLAYING)
    u = update(tts={"text": "Sorry, we have to go."})
    d = c(u)
    assert updated(d) == {"changes": ["tts"], "update_id": u.id, "interrupt": True, "skipped": []}
    assert types(d) == ["call.updated", "interrupt.requested", "tts.requested"]
    tag = tag_of(d)
    assert tag == "update:" + u.id and d.state.phase is Phase.UPDATED
    # The interrupted prompt's end is the old script's: it changes nothing now.
    ignored(c, msg("prompt.finished", interrupted=True))
    d = c(msg("tts.rendered", audio_ref="sha256:u.wav", step=tag))
    assert types(d) == ["play.requested"] and d.events[0].data == {"audio_ref": "sha256:u.wav", "barge_in": False,
                                                                     "step": tag}
    d = c(msg("prompt.finished", step=tag))
    assert types(d) == ["hangup.requested"] and d.events[0].data == {"reason": "script finished"}
    assert d.state.hangup_sent


def test_play_with_interrupt_ends_a_running_flow():
    c = at_menu_gather()
    d = c(update(audio_url="https://example.com/notice.wav"))
    assert types(d) == ["call.updated", "interrupt.requested", "audio.requested"]
    assert d.state.flow is None and d.state.phase is Phase.UPDATED
    ignored(c, msg("gather.completed", digits="1", step="menu"))  # the menu is gone


def test_queued_play_waits_for_what_plays_and_holds_the_scripts_hangup():
    c = call_in(Phase.PLAYING)
    d = c(update(tts={"text": "One more thing."}, interrupt=False))
    assert types(d) == ["call.updated", "tts.requested"] and updated(d)["interrupt"] is False
    assert d.state.phase is Phase.PLAYING  # the script goes on
    tag = tag_of(d)
    d = c(msg("tts.rendered", audio_ref="sha256:u.wav", step=tag))
    assert types(d) == ["play.requested"]  # the gateway plays it after the prompt playing now
    d = c(msg("prompt.finished"))  # the script's prompt: the script would hang up now ...
    assert types(d) == [] and not d.state.hangup_sent  # ... but the queued audio has not played
    assert d.state.updates.held_hangup == {"reason": "script finished"}
    d = c(msg("prompt.finished", step=tag))
    assert types(d) == ["hangup.requested"] and d.events[0].data == {"reason": "script finished"}


def test_queued_plays_go_out_in_the_order_of_the_updates():
    c = call_in(Phase.GATHERING, {**REQ, "gather": {"num_digits": 1}})
    first, second = tag_of(c(update(tts={"text": "First."}, interrupt=False))), \
        tag_of(c(update(tts={"text": "Second."}, interrupt=False)))
    assert types(c(msg("tts.rendered", audio_ref="sha256:2.wav", step=second))) == []  # waits for the first
    d = c(msg("tts.rendered", audio_ref="sha256:1.wav", step=first))
    assert [e.data["step"] for e in d.events] == [first, second]


def test_an_update_render_that_fails_is_skipped():
    c = call_in(Phase.GATHERING, {**REQ, "gather": {"num_digits": 1}})
    c(update(tts={"text": "Hi."}, interrupt=True))
    tag = c.state.updates.plays[0].tag
    d = c(msg("tts.failed", reason="engine down", step=tag))
    assert types(d) == ["hangup.requested"]  # nothing left to play: the replaced script ends


def test_update_media_is_never_the_flows_or_the_scripts():
    c = call_in(Phase.PLAYING)
    ignored(c, msg("tts.rendered", audio_ref="sha256:x.wav", step="update:unknown"))
    ignored(c, msg("prompt.finished", step="update:unknown"))
    assert c.state.phase is Phase.PLAYING


def test_an_interrupt_drops_update_audio_still_queued():
    c = call_in(Phase.PLAYING)
    old = tag_of(c(update(tts={"text": "Queued."}, interrupt=False)))
    c(update(tts={"text": "Now."}))
    assert [p.tag for p in c.state.updates.plays] != [old] and len(c.state.updates.plays) == 1
    ignored(c, msg("tts.rendered", audio_ref="sha256:q.wav", step=old))


# --- redirect --------------------------------------------------------------------------------

def test_redirect_to_an_inline_flow_interrupts_and_enters_it():
    c = call_in(Phase.GATHERING, {**REQ, "gather": {"num_digits": 1}})
    d = c(update(flow=OTHER))
    assert types(d) == ["call.updated", "interrupt.requested", "flow.step.entered", "tts.requested"]
    assert d.state.flow.definition == OTHER and d.state.phase is Phase.IN_PROGRESS
    ignored(c, msg("gather.completed", digits="1"))  # the script's gather is gone


def test_redirect_to_a_named_step_of_a_stored_flow():
    c = at_menu_gather()
    entered = c.state.flow.engine.entered
    d = c(update(flow_id="flow_other", step="ask"), flow_def={"version": 3, "flow": OTHER})
    assert updated(d)["flow_version"] == 3 and updated(d)["step"] == "ask"
    assert d.events[2].data == {"step": "ask", "kind": "gather"}
    # Step entries keep counting across flows: the old flow's media never matches the new one.
    assert c.state.flow.tag == f"ask#{entered + 1}"
    ignored(c, msg("tts.rendered", audio_ref="sha256:m.wav", step=f"menu#{entered}"))


def test_redirect_before_answer_replaces_the_flow_run_on_answer():
    c = call_in(Phase.RINGING, {**NO_MEDIA, "flow": MENU})
    d = c(update(flow=OTHER))
    assert types(d) == ["call.updated"] and d.state.flow.definition == OTHER
    d = c(msg("call.answered"))
    assert d.events[0].data == {"step": "hello", "kind": "say"}


# --- digits, recording, hang up -------------------------------------------------------------

def test_send_digits_is_an_instruction_to_the_gateway():
    c = call_in(Phase.GATHERING, {**REQ, "gather": {"num_digits": 1}})
    d = c(update(send_digits="12w34#"))
    assert types(d) == ["call.updated", "dtmf.send.requested"] and d.events[1].data == {"digits": "12w34#"}
    assert d.state.phase is Phase.GATHERING  # nothing else changes


@pytest.mark.parametrize("hold", [True, False])
def test_hold_is_an_instruction_to_the_gateway(hold):
    c = call_in(Phase.GATHERING, {**REQ, "gather": {"num_digits": 1}})
    d = c(update(hold=hold))
    assert types(d) == ["call.updated", "hold.requested"] and d.events[1].data == {"hold": hold}
    assert updated(d)["changes"] == ["hold"] and updated(d)["hold"] is hold
    assert d.state.phase is Phase.GATHERING  # the flow waits where it was: hold is the gateway's


@pytest.mark.parametrize("field,value", [("send_digits", "1"), ("tts", {"text": "x"}), ("recording", "start"),
                                         ("hold", True)])
def test_changes_that_need_an_answered_call_are_skipped_before_answer(field, value):
    c = call_in(Phase.RINGING)
    d = c(update(**{field: value}))
    assert types(d) == ["call.updated"]
    assert updated(d)["skipped"] == [{"field": field, "code": "call_not_answered",
                                      "message": f"{field} needs an answered call"}]


def test_recording_start_pause_resume_stop():
    c = call_in(Phase.GATHERING, {**REQ, "gather": {"num_digits": 1}})
    d = c(update(recording="start"))
    assert types(d)[1:] == ["record.requested"] and d.events[1].data == {"channels": "mono", "transcribe": False}
    for action in ("pause", "resume", "pause", "stop"):
        d = c(update(recording=action))
        assert types(d)[1:] == ["record.control.requested"] and d.events[1].data == {"action": action}
        assert updated(d)["skipped"] == []
    assert c.state.updates.recording == "stopped"


@pytest.mark.parametrize("setup,action,code", [
    ([], "pause", "not_recording"),
    ([], "stop", "not_recording"),
    (["start"], "resume", "recording_not_paused"),
    (["start", "pause"], "pause", "recording_paused"),
    (["start"], "start", "already_recording"),
    (["start", "stop"], "start", "recording_stopped"),
    (["start", "stop"], "resume", "not_recording"),
])
def test_recording_controls_that_do_not_apply_are_skipped(setup, action, code):
    c = call_in(Phase.GATHERING, {**REQ, "gather": {"num_digits": 1}})
    for a in setup:
        c(update(recording=a))
    d = c(update(recording=action))
    assert types(d) == ["call.updated"] and [s["code"] for s in updated(d)["skipped"]] == [code]


def test_a_call_recorded_from_answer_can_be_paused():
    c = call_in(Phase.PLAYING, {**REQ, "record": True})
    assert types(c(update(recording="pause"))) == ["call.updated", "record.control.requested"]


def test_status_completed_is_the_hangup_path():
    c = call_in(Phase.PLAYING)
    u = update(status="completed")
    d = c(u)
    assert types(d) == ["call.updated", "hangup.requested"] and d.events[1].data == {"reason": "api"}
    assert updated(d) == {"changes": ["status"], "update_id": u.id, "status": "completed", "skipped": []}
    c2 = call_in(Phase.QUEUED)
    assert types(c2(update(status="completed"))) == ["call.updated", "call.canceled"]


def test_a_hangup_held_for_update_audio_does_not_block_an_api_hangup():
    c = call_in(Phase.PLAYING)
    c(update(tts={"text": "Queued."}, interrupt=False))
    c(msg("prompt.finished"))
    assert c.state.updates.held_hangup is not None
    assert types(c(msg("HangupCall"))) == ["hangup.requested"]


def test_updates_once_the_call_hangs_up_are_skipped():
    c = call_in(Phase.PLAYING)
    c(msg("HangupCall"))
    d = c(update(send_digits="1"))
    assert [s["code"] for s in updated(d)["skipped"]] == ["call_ending"] and types(d) == ["call.updated"]


def test_a_redelivered_update_is_applied_once_and_a_finished_call_ignores_updates():
    c = call_in(Phase.PLAYING)
    u = update(send_digits="1")
    assert types(c(u)) == ["call.updated", "dtmf.send.requested"]
    ignored(c, u)
    c(msg("call.completed"))
    ignored(c, update(send_digits="2"))


def test_an_update_before_the_call_is_placed_is_ignored():
    d = Call()(update(send_digits="1"))
    assert d.outputs == () and d.state.phase is Phase.NEW


def test_an_update_the_intake_refused_is_only_a_fact():
    c = call_in(Phase.PLAYING)
    errors = [{"code": "flow_not_found", "field": "flow_id", "message": "no flow 'x' in this account"}]
    d = c(update(flow_id="x"), validation_errors=errors)
    assert types(d) == ["call.updated"] and updated(d)["skipped"] == errors and updated(d)["changes"] == []
    assert d.state.phase is Phase.PLAYING


def test_update_ids_are_derived_from_the_command():
    c1, c2 = call_in(Phase.PLAYING), call_in(Phase.PLAYING)
    u = update(tts={"text": "Hi."})
    assert [e.id for e in c1(u).events] == [e.id for e in c2(u).events]


def test_the_state_round_trips_with_pending_updates():
    from tests.unit.orchestrator.test_state import stored

    c = call_in(Phase.PLAYING, {**REQ, "record": True})
    c(update(tts={"text": "Queued."}, interrupt=False))
    c(update(recording="pause"))
    c(msg("prompt.finished"))
    assert stored(c.state) == c.state and c.state.updates.held_hangup


# --- time limit ------------------------------------------------------------------------------

def test_time_limit_sets_the_maximum_duration_timer():
    c = call_in(Phase.RINGING, {**REQ, "time_limit": 90})
    d = c(msg("call.answered"))
    assert ("max_duration", NOW + timedelta(seconds=90)) in timers(d)
    d = c(msg("timer.fired", timer="max_duration"))
    assert types(d) == ["hangup.requested"]
    assert d.events[0].data == {"reason": "time_limit", "status": "completed", "end_reason": "time_limit"}


def test_without_time_limit_the_default_maximum_applies():
    c = call_in(Phase.RINGING)
    assert ("max_duration", NOW + timedelta(seconds=MAX_CALL_S)) in timers(c(msg("call.answered")))
