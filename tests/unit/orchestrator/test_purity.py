"""Properties of decide() over random input sequences: it never changes what it is given."""

from __future__ import annotations

import copy
from datetime import timedelta

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import Envelope
from services.orchestrator.decide import INPUTS, decide
from services.orchestrator.outputs import CancelTimer, Emit, NextDialSlot, StartTimer
from services.orchestrator.state import CallState
from tests.unit.orchestrator.helpers import MENU, NO_MEDIA, NOW, REQ

ODD = {"start": "a", "steps": {
    "a": {"kind": "play", "url": "https://example.com/a.mp3", "next": "p"},
    "p": {"kind": "pause", "seconds": 2, "next": "r"},
    "r": {"kind": "record", "next": "w"},
    "w": {"kind": "webhook", "url": "https://example.com/hook", "next": "g"},
    "g": {"kind": "gather", "num_digits": 2, "hints": ["yes"], "barge_in": False,
          "prompt": [{"kind": "say", "text": "one"}, {"kind": "play", "url": "https://example.com/b.wav"}],
          "branches": {"12": "a", "yes": "x"}, "on_timeout": "x"},
    "x": {"kind": "hangup"},
}}
REQUESTS = [REQ, {**REQ, "gather": {"num_digits": 1}, "record": True}, {**NO_MEDIA, "audio_url": "https://e.com/a"},
            {**NO_MEDIA, "flow": MENU}, {**NO_MEDIA, "flow": ODD, "transcribe": True}]
TYPES = sorted(INPUTS) + ["call.queued", "play.requested"]
TIMERS = ["pace", "ring_timeout", "hangup_grace", "max_duration", "flow_pause", "machine_detection"]


def _data(draw, t: str, s: CallState | None) -> dict:
    """A payload for `t`, aimed (mostly) at the step entry the call is at."""
    tag = step = None
    if s is not None and s.flow is not None:
        tag, step = s.flow.tag, s.flow.engine_state.step
    near = st.sampled_from([tag, tag, step, "stale#0", None])
    if t == "timer.fired":
        return {"timer": draw(st.sampled_from(TIMERS)), "token": draw(near) or ""}
    data: dict = {}
    if t in ("tts.rendered", "audio.fetched"):
        data["audio_ref"] = draw(st.sampled_from(["sha256:a.wav", "sha256:b.wav"]))
    elif t in ("tts.failed", "audio.failed", "flow.webhook.failed"):
        data["reason"] = "boom"
    elif t == "prompt.finished":
        data["interrupted"] = draw(st.booleans())
    elif t in ("gather.completed", "gather.timeout"):
        data["digits"] = draw(st.sampled_from(["", "1", "9", "12"]))
        if t == "gather.completed" and draw(st.booleans()):
            data["speech"] = {"text": "yes please", "matched_hint": draw(st.sampled_from([None, "yes"]))}
    elif t == "flow.webhook.answered":
        data["steps"] = draw(st.sampled_from([[], [{"kind": "say", "text": "hi"}], [{"kind": "bogus"}]]))
    elif t == "HangupCall":
        return draw(st.sampled_from([{}, {"reason": "api"}]))
    where = draw(near)
    if where is not None:
        data["step"] = where
    return data


def freeze(s: CallState | None):
    return None if s is None else (copy.deepcopy(s), orjson.dumps(s.to_json()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_decide_never_mutates_its_input_and_every_state_survives_storage(data):
    req = data.draw(st.sampled_from(REQUESTS))
    paced = data.draw(st.booleans())
    state: CallState | None = None
    ids: set[str] = set()
    for n in range(data.draw(st.integers(1, 40))):
        t = "PlaceCall" if n == 0 else data.draw(st.sampled_from(TYPES))
        m = Envelope(type=t, call_id="call_1", account_id="acct_1",
                     data=copy.deepcopy(req) if t == "PlaceCall" else _data(data.draw, t, state),
                     occurred_at="2026-01-01T00:00:00.000Z")
        now = NOW + timedelta(seconds=n)
        kw = {"pacing_slot": NOW + timedelta(seconds=3) if paced else None}
        before, msg_before = freeze(state), copy.deepcopy(m.data)

        d = decide(state, m, now, **kw)

        if state is not None:
            assert state == before[0] and orjson.dumps(state.to_json()) == before[1], "decide changed its input"
        assert m.data == msg_before
        again = decide(state, m, now, **kw)  # deterministic: the same input decides the same way
        assert again.state == d.state
        assert [(e.type, e.id, e.data) for e in again.events] == [(e.type, e.id, e.data) for e in d.events]
        assert all(type(o) in (Emit, StartTimer, CancelTimer, NextDialSlot) for o in d.outputs)
        assert CallState.from_json(orjson.loads(orjson.dumps(d.state.to_json()))) == d.state
        if state is not None and state.ended:
            assert d.outputs == () and d.state.ended
        new_ids = [e.id for e in d.events]
        assert not ids & set(new_ids) and len(set(new_ids)) == len(new_ids), "an output id was reused"
        ids |= set(new_ids)
        state = d.state
