"""Each phase transition and each handled input of decide(), and the inputs it ignores."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from events import derive_id
from events.catalog import TERMINAL_EVENTS
from services.orchestrator.decide import (COMMAND_INPUTS, EVENT_INPUTS, FLOW_EVENTS, HANGUP_GRACE_S, INPUTS, MAX_CALL_S,
                                          RING_GRACE_S, TIMERS, Source, decide)
from services.orchestrator.outputs import CancelTimer, Emit, NextDialSlot, StartTimer
from services.orchestrator.state import Phase
from tests.unit.orchestrator.helpers import MENU, NO_MEDIA, NOW, REQ, Call, msg, timers, types


def call_in(phase: Phase, req: dict | None = None, **kw) -> Call:
    """A call driven (through decide) to `phase`."""
    c = Call()
    req = REQ if req is None else req
    if phase is Phase.QUEUED:
        c(msg("PlaceCall", **req), pacing_slot=NOW + timedelta(seconds=5))
        return c
    c(msg("PlaceCall", **req))
    steps = {Phase.DIALING: [], Phase.RINGING: ["call.ringing"], Phase.IN_PROGRESS: ["call.ringing", "call.answered"]}
    for t in steps.get(phase, ["call.ringing", "call.answered"]):
        c(msg(t))
    if phase in (Phase.PLAYING, Phase.PROMPTED, Phase.GATHERING, Phase.GATHERED):
        c(msg("tts.rendered", audio_ref="sha256:p.wav"))
    if phase in (Phase.PROMPTED, Phase.GATHERING, Phase.GATHERED):
        c(msg("prompt.finished"))
    if phase is Phase.GATHERED:
        c(msg("gather.completed", digits="1"))
    assert c.state.phase is phase, c.state.phase
    return c


GATHER_REQ = {**REQ, "gather": {"num_digits": 1, "timeout": 5}}


# --- the input table ---------------------------------------------------------------------

def test_one_table_lists_every_input():
    assert COMMAND_INPUTS == {"PlaceCall", "HangupCall", "UpdateCall"}
    assert EVENT_INPUTS == {"call.received", "timer.fired", "call.ringing", "call.answered", "tts.rendered", "audio.fetched",
                            "tts.failed", "audio.failed", "prompt.finished", "gather.completed", "gather.timeout",
                            "flow.webhook.answered", "flow.webhook.failed", "stream.stopped", "stream.failed",
                            "machine_detection.completed", "call.leg.requested", "dial.answered", "dial.ended",
                            "transfer.completed", "transfer.failed", *TERMINAL_EVENTS}
    assert FLOW_EVENTS == {"tts.rendered", "audio.fetched", "tts.failed", "audio.failed", "prompt.finished",
                           "gather.completed", "gather.timeout", "timer.fired", "flow.webhook.answered",
                           "flow.webhook.failed", "stream.stopped", "stream.failed", "dial.answered", "dial.ended",
                           "transfer.completed", "transfer.failed"}
    assert set(INPUTS) == COMMAND_INPUTS | EVENT_INPUTS
    assert all((r.source is Source.COMMAND) == (t[0].isupper()) for t, r in INPUTS.items())
    assert all(r.call is not None or r.flow is not None for r in INPUTS.values())


def test_the_consumer_subscribes_from_the_table():
    from events import topics
    from services.orchestrator import service

    assert service.SUBSCRIPTION == [topics.COMMANDS, topics.EVENTS]
    assert service.EVENT_INPUTS is EVENT_INPUTS and service.COMMAND_INPUTS is COMMAND_INPUTS


# --- PlaceCall: NEW -> QUEUED / DIALING / REJECTED -----------------------------------------

def test_place_call_dials_at_once_within_the_pacing_burst():
    c = Call()
    m = msg("PlaceCall", **REQ)
    d = c(m, pacing_slot=NOW + timedelta(milliseconds=50), cps=4)
    assert d.state.phase is Phase.DIALING and d.state.dialed and not d.state.answered
    assert types(d) == ["call.queued", "tts.requested", "dial.requested"]
    assert d.events[0].data == {**REQ, "created_at": m.occurred_at, "direction": "outbound"}
    assert d.events[1].data == {"text": "Hi", "voice": "en-US-Neural2-F", "speed": 1.0, "pitch": 0.0}
    assert d.events[2].data == {"to": REQ["to"], "from": REQ["from"], "timeout": 30, "carrier": "sandbox"}
    assert d.events[2].id == derive_id(m.id, "dial")
    assert timers(d) == [("ring_timeout", NOW + timedelta(seconds=30 + RING_GRACE_S))]
    assert d.pacing_next == NOW + timedelta(milliseconds=50) + timedelta(seconds=0.25)
    assert [type(o) for o in d.outputs] == [Emit, Emit, NextDialSlot, Emit, StartTimer]
    assert d.state.request == {**REQ, "created_at": m.occurred_at}


def test_place_call_over_the_rate_waits_queued_for_its_slot():
    slot = NOW + timedelta(seconds=5)
    m = msg("PlaceCall", **REQ)
    d = decide(None, m, NOW, pacing_slot=slot)
    assert d.state.phase is Phase.QUEUED and not d.state.dialed
    assert types(d) == ["call.queued", "tts.requested"]
    assert d.timers == [StartTimer("pace", slot, token=m.id)]
    # QUEUED -> DIALING when the slot comes
    d2 = decide(d.state, msg("timer.fired", timer="pace", token=m.id), slot)
    assert d2.state.phase is Phase.DIALING and types(d2) == ["dial.requested"]


def test_place_call_with_audio_url_fetches_it():
    d = decide(None, msg("PlaceCall", **NO_MEDIA, audio_url="https://example.com/a.mp3"), NOW)
    assert types(d) == ["call.queued", "audio.requested", "dial.requested"]
    assert d.events[1].data == {"url": "https://example.com/a.mp3"}


def test_place_call_failing_validation_is_rejected_and_final():
    errs = [{"code": "unverified_number", "field": "from", "message": "not verified"}]
    d = decide(None, msg("PlaceCall", **REQ), NOW, validation_errors=errs)
    assert d.state.phase is Phase.REJECTED and d.state.ended
    assert types(d) == ["call.rejected"] and d.events[0].data == {"errors": errs}
    assert d.pacing_next is None and d.timers == []


def test_place_call_with_a_stored_flow_keeps_the_definition_and_version():
    d = decide(None, msg("PlaceCall", **NO_MEDIA, flow_id="flow_x"), NOW, flow_def={"version": 7, "flow": MENU})
    assert d.state.flow.definition == MENU and d.state.flow.engine is None
    assert d.events[0].data["flow_version"] == 7
    assert types(d) == ["call.queued", "dial.requested"]


# --- DIALING -> RINGING -> IN_PROGRESS -------------------------------------------------------

def test_ringing_then_answered():
    c = call_in(Phase.DIALING)
    d = c(msg("call.ringing"))
    assert d.state.phase is Phase.RINGING and d.outputs == ()
    m = msg("call.answered")
    d = c(m)
    assert d.state.phase is Phase.IN_PROGRESS and d.state.answered
    assert d.timers == [CancelTimer("ring_timeout"), StartTimer("max_duration", NOW + timedelta(seconds=MAX_CALL_S),
                                                                token=m.id)]
    assert types(d) == []  # the prompt is not rendered yet


def test_answered_while_dialing_and_with_recording():
    c = call_in(Phase.DIALING, {**REQ, "record": True, "recording_channels": "dual", "transcribe": True})
    d = c(msg("call.answered"))
    assert d.state.phase is Phase.IN_PROGRESS and d.state.recording
    assert types(d) == ["record.requested"] and d.events[0].data == {"channels": "dual", "transcribe": True}


def test_ringing_while_queued_counts_as_dialled():
    # The carrier reports a call this state never dialled (e.g. inputs decided out of
    # order after a crash): it is treated as dialled, so a hangup goes to the gateway.
    c = call_in(Phase.QUEUED)
    assert c(msg("call.ringing")).state.phase is Phase.RINGING
    assert types(c(msg("HangupCall"))) == ["hangup.requested"]


# --- the script: IN_PROGRESS -> PLAYING -> PROMPTED -> GATHERING -> GATHERED ------------------

@pytest.mark.parametrize("media", ["tts.rendered", "audio.fetched"])
def test_media_ready_after_answer_plays(media):
    c = call_in(Phase.IN_PROGRESS, GATHER_REQ)
    m = msg(media, audio_ref="sha256:p.wav")
    d = c(m)
    assert d.state.phase is Phase.PLAYING and d.state.audio_ref == "sha256:p.wav"
    assert types(d) == ["play.requested"] and d.events[0].data == {"audio_ref": "sha256:p.wav", "barge_in": True}
    assert d.events[0].id == derive_id(m.id, "play")


def test_media_ready_before_answer_is_kept_and_played_on_answer():
    c = call_in(Phase.RINGING)
    d = c(msg("tts.rendered", audio_ref="sha256:p.wav"))
    assert d.state.phase is Phase.RINGING and d.state.audio_ref == "sha256:p.wav" and d.outputs == ()
    d = c(msg("call.answered"))
    assert d.state.phase is Phase.PLAYING and types(d) == ["play.requested"]


def test_prompt_finished_gathers_when_asked():
    c = call_in(Phase.PLAYING, GATHER_REQ)
    d = c(msg("prompt.finished", interrupted=False))
    assert d.state.phase is Phase.GATHERING
    assert types(d) == ["gather.requested"]
    assert d.events[0].data == {"type": "dtmf", "num_digits": 1, "finish_on_key": "#", "timeout": 5,
                                "inter_digit_timeout": None, "hints": None, "language": None}


def test_prompt_finished_without_gather_hangs_up():
    c = call_in(Phase.PLAYING)
    d = c(msg("prompt.finished"))
    assert d.state.phase is Phase.PROMPTED and d.state.hangup_sent
    assert types(d) == ["hangup.requested"] and d.events[0].data == {"reason": "script finished"}


@pytest.mark.parametrize("event", ["gather.completed", "gather.timeout"])
def test_gather_done_hangs_up(event):
    c = call_in(Phase.GATHERING, GATHER_REQ)
    d = c(msg(event, digits="1"))
    assert d.state.phase is Phase.GATHERED and d.state.hangup_sent and types(d) == ["hangup.requested"]


@pytest.mark.parametrize("failed", ["tts.failed", "audio.failed"])
def test_media_failure_hangs_up_with_its_reason(failed):
    c = call_in(Phase.IN_PROGRESS)
    d = c(msg(failed, reason="HTTP 404"))
    assert d.state.media_failed == "HTTP 404" and d.state.hangup_sent
    assert d.events[0].data == {"reason": "HTTP 404", "status": "failed"}


def test_media_failure_before_answer_hangs_up_on_answer():
    c = call_in(Phase.RINGING)
    assert c(msg("tts.failed")).outputs == ()
    d = c(msg("call.answered"))
    assert types(d) == ["hangup.requested"] and d.events[0].data == {"reason": "media failed", "status": "failed"}


# --- timers -----------------------------------------------------------------------------------

def test_ring_timeout_hangs_up_then_hangup_grace_fails_the_call():
    c = call_in(Phase.RINGING)
    m = msg("timer.fired", timer="ring_timeout")
    d = c(m, NOW + timedelta(seconds=40))
    assert d.state.hangup_sent and d.state.phase is Phase.RINGING
    assert d.events[0].data == {"reason": "ring timeout", "status": "no-answer"}
    assert d.timers == [StartTimer("hangup_grace", NOW + timedelta(seconds=40 + HANGUP_GRACE_S), token=m.id)]
    d = c(msg("timer.fired", timer="hangup_grace"))
    assert d.state.phase is Phase.ENDED and types(d) == ["call.failed"]
    assert d.events[0].data == {"reason": "no response from the telephony gateway", "hangup_by": "system"}


def test_max_duration_hangs_up_once():
    c = call_in(Phase.PLAYING)
    d = c(msg("timer.fired", timer="max_duration"))
    assert d.state.hangup_sent and d.events[0].data == {"reason": "time_limit", "status": "completed", "end_reason": "time_limit"}
    assert c(msg("timer.fired", timer="max_duration")).outputs == ()


# --- HangupCall ---------------------------------------------------------------------------------

def test_hangup_while_queued_cancels_without_the_gateway():
    c = call_in(Phase.QUEUED)
    d = c(msg("HangupCall", reason="api"))
    assert d.state.phase is Phase.ENDED
    assert types(d) == ["call.canceled"] and d.timers == [CancelTimer("pace")]
    assert d.events[0].data == {"reason": "api", "hangup_by": "caller", "duration": 0}


@pytest.mark.parametrize("phase", [Phase.DIALING, Phase.RINGING, Phase.IN_PROGRESS, Phase.PLAYING])
def test_hangup_of_a_dialled_call_goes_to_the_gateway_once(phase):
    c = call_in(phase)
    d = c(msg("HangupCall"))
    assert d.state.phase is phase and d.state.hangup_sent and types(d) == ["hangup.requested"]
    assert d.events[0].data == {"reason": "api"}
    assert c(msg("HangupCall")).outputs == ()


# --- terminal events: any live phase -> ENDED ----------------------------------------------------

@pytest.mark.parametrize("terminal", sorted(TERMINAL_EVENTS))
@pytest.mark.parametrize("phase", [Phase.QUEUED, Phase.DIALING, Phase.RINGING, Phase.IN_PROGRESS, Phase.PLAYING,
                                   Phase.GATHERING])
def test_a_terminal_event_ends_the_call_and_disarms_every_timer(phase, terminal):
    c = call_in(phase, GATHER_REQ)
    d = c(msg(terminal))
    assert d.state.phase is Phase.ENDED and d.state.ended and types(d) == []
    assert d.timers == [CancelTimer(n) for n in TIMERS]


# --- ignored and stale inputs ---------------------------------------------------------------------

def ignored(c: Call, m) -> None:
    before = c.state
    d = c(m)
    assert d.outputs == ()
    assert d.state == replace(before, seen=before.seen + 1)  # nothing but the input count moved


@pytest.mark.parametrize("type", sorted(INPUTS))
@pytest.mark.parametrize("final", ["rejected", "ended"])
def test_a_finished_call_ignores_every_input(type, final):
    c = Call()
    if final == "rejected":
        c(msg("PlaceCall", **REQ), validation_errors=[{"code": "x", "field": "to", "message": "no"}])
    else:
        c = call_in(Phase.PLAYING)
        c(msg("call.completed"))
    data = {"timer": "hangup_grace"} if type == "timer.fired" else {"audio_ref": "sha256:x.wav"}
    ignored(c, msg(type, **(REQ if type == "PlaceCall" else data)))


def test_unknown_and_own_output_types_are_ignored():
    c = call_in(Phase.RINGING)
    for t in ("call.queued", "dial.requested", "play.requested", "no.such.type"):
        ignored(c, msg(t))


def test_duplicates_and_out_of_phase_inputs_are_ignored():
    c = call_in(Phase.DIALING)
    ignored(c, msg("PlaceCall", **REQ))  # a producer retry
    ignored(c, msg("timer.fired", timer="pace"))  # already dialled
    ignored(c, msg("prompt.finished"))  # nothing is playing
    ignored(c, msg("gather.completed", digits="1"))  # nothing is gathering
    ignored(c, msg("flow.webhook.answered", steps=[]))  # no flow
    c = call_in(Phase.PLAYING, GATHER_REQ)
    ignored(c, msg("call.ringing"))
    ignored(c, msg("call.answered"))
    ignored(c, msg("tts.rendered", audio_ref="sha256:other.wav"))  # the prompt is already known
    ignored(c, msg("timer.fired", timer="ring_timeout"))  # answered
    ignored(c, msg("timer.fired", timer="no_such_timer"))
    c = call_in(Phase.GATHERING, GATHER_REQ)
    ignored(c, msg("prompt.finished"))  # a second end of the prompt


def test_inputs_before_place_call_wait_for_it():
    c = Call()
    d = c(msg("HangupCall"))
    assert d.state.phase is Phase.NEW and d.outputs == () and d.state.seen == 1
    assert types(c(msg("PlaceCall", **REQ))) == ["call.queued", "tts.requested", "dial.requested"]


def test_after_a_hangup_the_script_stops():
    c = call_in(Phase.IN_PROGRESS, GATHER_REQ)
    c(msg("HangupCall"))
    d = c(msg("tts.rendered", audio_ref="sha256:p.wav"))
    assert d.outputs == () and d.state.audio_ref == "sha256:p.wav" and d.state.phase is Phase.IN_PROGRESS


# --- flows: the flow handlers of the table ------------------------------------------------------

def flow_call() -> Call:
    c = Call()
    c(msg("PlaceCall", **NO_MEDIA, flow=MENU))
    d = c(msg("call.answered"))
    assert types(d) == ["flow.step.entered", "tts.requested"]
    assert d.state.flow.media.tag == "welcome#1" and d.state.flow.media.waiting == "render"
    return c


@pytest.mark.parametrize("media", ["tts.rendered", "audio.fetched"])
def test_flow_plays_a_render_for_the_current_entry_only(media):
    c = flow_call()
    ignored(c, msg(media, audio_ref="sha256:w.wav", step="menu#0"))  # a stale entry
    ignored(c, msg(media, audio_ref="sha256:w.wav"))  # untagged: not the flow's
    d = c(msg(media, audio_ref="sha256:w.wav", step="welcome#1"))
    assert types(d) == ["play.requested"] and d.state.flow.media.waiting == "play"
    assert d.events[0].data == {"audio_ref": "sha256:w.wav", "barge_in": True, "step": "welcome#1"}
    ignored(c, msg(media, audio_ref="sha256:w.wav", step="welcome#1"))  # a duplicate render


def test_flow_ids_follow_the_flow_output_count():
    c = flow_call()
    m = msg("tts.rendered", audio_ref="sha256:w.wav", step="welcome#1")
    d = c(m)
    assert d.state.flow.seq == 3 and d.events[0].id == derive_id(m.id, "flow:3:play.requested")


@pytest.mark.parametrize("failed", ["tts.failed", "audio.failed"])
def test_flow_skips_a_prompt_that_cannot_be_rendered(failed):
    c = flow_call()
    d = c(msg(failed, reason="boom", step="welcome#1"))
    # the say step's only prompt is gone: the step is over, the menu is entered
    assert types(d) == ["flow.step.entered", "tts.requested"] and d.state.flow.media.tag == "menu#2"


def test_flow_prompt_finished_moves_on_and_gathers_after_the_menu_prompt():
    c = flow_call()
    c(msg("tts.rendered", audio_ref="sha256:w.wav", step="welcome#1"))
    ignored(c, msg("prompt.finished", step="stale#9"))
    d = c(msg("prompt.finished", step="welcome#1"))
    assert types(d) == ["flow.step.entered", "tts.requested"]
    c(msg("tts.rendered", audio_ref="sha256:m.wav", step="menu#2"))
    d = c(msg("prompt.finished", step="menu#2"))
    assert types(d) == ["gather.requested"] and d.state.flow.media.waiting is None
    assert d.events[0].data == {"type": "dtmf", "num_digits": 1, "finish_on_key": "#", "timeout": 5,
                                "inter_digit_timeout": None, "hints": None, "language": None, "step": "menu"}


def at_menu_gather() -> Call:
    c = flow_call()
    c(msg("tts.rendered", audio_ref="sha256:w.wav", step="welcome#1"))
    c(msg("prompt.finished", step="welcome#1"))
    c(msg("tts.rendered", audio_ref="sha256:m.wav", step="menu#2"))
    c(msg("prompt.finished", step="menu#2"))
    assert c.state.flow.engine.waiting == "gather"
    return c


def test_flow_gather_completed_branches():
    c = at_menu_gather()
    ignored(c, msg("gather.completed", digits="1", step="welcome"))  # another step's gather
    d = c(msg("gather.completed", digits="1", step="menu"))
    assert types(d) == ["flow.step.entered", "tts.requested"] and d.events[0].data == {"step": "sales", "kind": "say"}


def test_flow_gather_completed_by_speech_uses_the_matched_hint():
    c = at_menu_gather()
    d = c(msg("gather.completed", digits="", step="menu", speech={"text": "uh", "matched_hint": "9"}))
    assert d.events[0].data == {"step": "menu", "kind": "gather"}


def test_flow_gather_timeout_reprompts_then_takes_on_timeout():
    c = at_menu_gather()
    d = c(msg("gather.timeout", step="menu"))
    assert types(d) == ["flow.step.entered", "tts.requested"] and d.state.flow.engine.retries == 1
    c(msg("tts.rendered", audio_ref="sha256:m.wav", step="menu#3"))
    c(msg("prompt.finished", step="menu#3"))
    d = c(msg("gather.timeout", step="menu"))
    assert types(d) == ["flow.step.entered", "hangup.requested"] and d.state.hangup_sent


def test_flow_barge_in_skips_the_rest_of_the_prompt():
    c = flow_call()
    c(msg("tts.rendered", audio_ref="sha256:w.wav", step="welcome#1"))
    c(msg("prompt.finished", step="welcome#1"))
    c(msg("tts.rendered", audio_ref="sha256:m.wav", step="menu#2"))
    d = c(msg("prompt.finished", step="menu#2", interrupted=True))
    assert types(d) == ["gather.requested"] and d.state.flow.media.queue == ()


HOOKED = {"start": "ask", "steps": {
    "ask": {"kind": "webhook", "url": "https://example.com/hook", "next": "hold"},
    "hold": {"kind": "pause", "seconds": 2, "next": "rec"},
    "rec": {"kind": "record", "channels": "dual", "next": "bye"},
    "bye": {"kind": "hangup"},
}}


def hooked_call() -> Call:
    c = Call()
    c(msg("PlaceCall", **NO_MEDIA, flow=HOOKED, transcribe=True))
    d = c(msg("call.answered"))
    assert types(d) == ["flow.step.entered", "flow.webhook.requested"]
    assert d.events[1].data == {"url": "https://example.com/hook", "step": "ask", "digits": None, "speech": None}
    return c


def test_flow_webhook_answered_runs_the_apps_steps():
    c = hooked_call()
    ignored(c, msg("flow.webhook.answered", steps=[], step="other"))
    d = c(msg("flow.webhook.answered", steps=[{"kind": "say", "text": "From the app."}], step="ask"))
    assert types(d) == ["flow.step.entered", "tts.requested"] and d.events[0].data == {"step": "ask.0", "kind": "say"}


def test_flow_webhook_failed_pauses_then_records_then_hangs_up():
    c = hooked_call()
    m = msg("flow.webhook.failed", reason="HTTP 500", step="ask")
    d = c(m, NOW + timedelta(seconds=1))
    assert types(d) == ["flow.step.entered"]
    assert d.timers == [StartTimer("flow_pause", NOW + timedelta(seconds=3), token="hold#2")]
    ignored(c, msg("timer.fired", timer="flow_pause", token="hold#1"))  # an earlier entry's pause
    d = c(msg("timer.fired", timer="flow_pause", token="hold#2"))
    assert types(d) == ["flow.step.entered", "record.requested", "flow.step.entered", "hangup.requested"]
    assert d.events[1].data == {"channels": "dual", "transcribe": True}
    assert d.state.recording and d.state.hangup_sent and d.state.flow.engine.done


def test_flow_inputs_after_the_flow_hung_up_go_to_the_script_and_are_ignored():
    c = at_menu_gather()
    c(msg("HangupCall"))
    ignored(c, msg("gather.completed", digits="1", step="menu"))
    ignored(c, msg("flow.webhook.failed", step="menu"))


def test_a_flow_call_is_still_hung_up_at_the_maximum_duration():
    c = flow_call()
    d = c(msg("timer.fired", timer="max_duration"))
    assert d.state.hangup_sent and types(d) == ["hangup.requested"]
    assert d.events[0].data == {"reason": "time_limit", "status": "completed", "end_reason": "time_limit"}
    ignored(c, msg("timer.fired", timer="flow_pause", token="stale#0"))
