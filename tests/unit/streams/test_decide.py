"""The orchestrator's decisions about media streams (pure decide, no broker)."""

from __future__ import annotations

from services.lib.flows import engine as fe
from services.orchestrator.state import CallState, Phase
from tests.unit.orchestrator.helpers import NO_MEDIA, REQ, Call, msg, types

BOT = {"url": "wss://bot.example.com/media", "track": "inbound", "bidirectional": True, "parameters": {"a": "b"}}


def answered(req: dict) -> Call:
    c = Call()
    c(msg("PlaceCall", **req))
    c(msg("call.ringing"))
    c(msg("call.answered"))
    return c


def test_the_stream_option_goes_with_the_dial():
    c = Call()
    d = c(msg("PlaceCall", **REQ, stream=BOT))
    dial = next(e for e in d.events if e.type == "dial.requested")
    assert dial.data["stream"] == BOT  # the gateway opens it at the instant of answer


def test_a_bots_call_plays_nothing_and_lasts_as_long_as_its_stream():
    c = answered({**NO_MEDIA, "stream": BOT})
    assert "play.requested" not in types(c.decisions[-1]) and not c.state.hangup_sent
    assert types(c(msg("stream.started", stream_sid="MZ1", url=BOT["url"]))) == []
    d = c(msg("stream.stopped", stream_sid="MZ1", url=BOT["url"], reason="app closed the stream"))
    assert types(d) == ["hangup.requested"] and d.events[0].data["reason"] == "stream ended"
    assert c.state.stream_done


def test_after_its_prompt_a_bots_call_waits_for_the_stream():
    c = answered({**REQ, "stream": BOT})
    c(msg("tts.rendered", audio_ref="sha256:p.wav"))
    d = c(msg("prompt.finished"))
    assert types(d) == [] and c.state.phase is Phase.PROMPTED  # the script is done; the bot is not
    d = c(msg("stream.failed", stream_sid="MZ1", url=BOT["url"], reason="app closed the stream with code 1011"))
    assert types(d) == ["hangup.requested"]
    assert types(c(msg("stream.stopped", stream_sid="MZ1", url=BOT["url"], reason="call ended"))) == []  # once


def test_a_failed_stream_before_the_prompt_ends_lets_the_script_go_on():
    c = answered({**REQ, "stream": BOT})
    assert types(c(msg("stream.failed", stream_sid="MZ1", url=BOT["url"], reason="connect failed"))) == []
    c(msg("tts.rendered", audio_ref="sha256:p.wav"))
    assert types(c(msg("prompt.finished"))) == ["hangup.requested"]  # the call went on, then ended as scripted


def test_a_one_way_stream_does_not_hold_the_call():
    c = answered({**REQ, "stream": {**BOT, "bidirectional": False}})
    c(msg("tts.rendered", audio_ref="sha256:p.wav"))
    d = c(msg("prompt.finished"))
    assert types(d) == ["hangup.requested"] and d.events[0].data["reason"] == "script finished"


def test_stream_done_survives_storage():
    c = answered({**NO_MEDIA, "stream": BOT})
    c(msg("stream.failed", stream_sid="MZ1", url=BOT["url"], reason="x"))
    assert CallState.from_json(c.state.to_json()) == c.state
    assert "stream_done" not in CallState("c", "a").to_json()  # rows of calls without one keep their layout


FLOW = {"start": "hello", "steps": {
    "hello": {"kind": "say", "text": "Connecting you.", "next": "bot"},
    "bot": {"kind": "stream", "url": BOT["url"], "bidirectional": True, "parameters": {"k": "v"}, "next": "bye"},
    "bye": {"kind": "say", "text": "Goodbye."}}}


def test_engine_bidirectional_stream_waits_one_way_goes_on():
    state, actions = fe.start(FLOW)
    state, actions = fe.on_input(FLOW, state, fe.PromptFinished())
    assert actions[-1] == fe.Stream("bot", BOT["url"], "inbound", True, {"k": "v"}) and state.waiting == "stream"
    assert fe.on_input(FLOW, state, fe.PromptFinished()) == (state, ())  # not what it waits for
    assert fe.on_input(FLOW, state, fe.StreamEnded(step="other")) == (state, ())  # another step's stream
    state, actions = fe.on_input(FLOW, state, fe.StreamEnded(reason="app closed the stream", step="bot"))
    assert [type(a).__name__ for a in actions] == ["EnterStep", "Say"]
    one_way = {**FLOW, "steps": {**FLOW["steps"], "bot": {**FLOW["steps"]["bot"], "bidirectional": False}}}
    state, _ = fe.start(one_way)
    state, actions = fe.on_input(one_way, state, fe.PromptFinished())
    assert state.waiting == "prompt"  # the orchestrator feeds PromptFinished at once


def test_flow_stream_step_through_decide():
    c = answered({**NO_MEDIA, "flow": FLOW})
    c(msg("tts.rendered", audio_ref="sha256:p.wav", step=c.state.flow.media.tag))
    d = c(msg("prompt.finished", step=c.state.flow.media.tag))
    req = next(e for e in d.events if e.type == "stream.requested")
    assert req.data == {"url": BOT["url"], "track": "inbound", "bidirectional": True, "parameters": {"k": "v"},
                        "step": "bot"}
    # The call's own stream (no step) is not the flow's: nothing moves.
    assert types(c(msg("stream.stopped", stream_sid="MZ0", url=BOT["url"], reason="x"))) == []
    d = c(msg("stream.stopped", stream_sid="MZ1", url=BOT["url"], reason="app closed the stream", step="bot"))
    assert types(d) == ["flow.step.entered", "tts.requested"]  # on to `bye`


def test_flow_one_way_stream_step_goes_on_at_once():
    flow = {**FLOW, "steps": {**FLOW["steps"], "bot": {**FLOW["steps"]["bot"], "bidirectional": False}}}
    c = answered({**NO_MEDIA, "flow": flow})
    c(msg("tts.rendered", audio_ref="sha256:p.wav", step=c.state.flow.media.tag))
    d = c(msg("prompt.finished", step=c.state.flow.media.tag))
    assert types(d) == ["flow.step.entered", "stream.requested", "flow.step.entered", "tts.requested"]


def test_simulating_a_flow_with_a_stream_step_goes_through_it():
    from services.lib.flows.simulate import simulate

    sim = simulate(FLOW, [])
    assert sim.path == ["hello", "bot", "bye"]  # the bidirectional stream "ends at once" in a simulation
    assert any("stream wss://bot.example.com/media" in h for x in sim.entries for h in x.says)
