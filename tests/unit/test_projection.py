"""apply(row, event): the call row as a pure function of its events."""

from __future__ import annotations

from functools import reduce

from events import Envelope
from services.projector.calls import apply


def ev(type, at, **data):
    return Envelope(type=type, call_id="call_1", account_id="acct_1", data=data, occurred_at=at)


QUEUED = ev("call.queued", "2026-01-01T00:00:00Z", to="+15551234567", **{"from": "+15559876543"},
            direction="outbound", created_at="2026-01-01T00:00:00Z", carrier="sandbox",
            tts={"text": "hi"}, record=True)


def fold(*events):
    return reduce(apply, events, None)


def test_happy_path():
    row = fold(QUEUED, ev("call.ringing", "2026-01-01T00:00:01Z"), ev("call.answered", "2026-01-01T00:00:03Z"),
               ev("call.completed", "2026-01-01T00:00:45Z", reason="callee hung up", hangup_by="callee"))
    assert row["status"] == "completed"
    assert row["to_number"] == "+15551234567" and row["from_number"] == "+15559876543"
    assert row["duration"] == 42
    assert row["options"] == {"tts": {"text": "hi"}, "record": True}
    assert row["events_count"] == 4
    assert row["updated_at"].isoformat() == "2026-01-01T00:00:45+00:00"


def test_a_hangup_without_a_reason_says_who_hung_up():
    # A BYE from the far end carries no reason: the public call still says who ended it.
    for by, said in (("callee", "callee hung up"), ("caller", "hung up by caller"), ("system", "ended by the service")):
        row = fold(QUEUED, ev("call.answered", "2026-01-01T00:00:03Z"),
                   ev("call.completed", "2026-01-01T00:00:09Z", reason="", hangup_by=by))
        assert (row["end_reason"], row["hangup_by"]) == (said, by)
    row = fold(QUEUED, ev("call.failed", "2026-01-01T00:00:09Z", reason="media timeout", hangup_by="system"))
    assert row["end_reason"] == "media timeout"  # the carrier's reason, when it gave one


def test_status_never_regresses_and_first_terminal_wins():
    row = fold(QUEUED, ev("call.answered", "2026-01-01T00:00:03Z"), ev("call.ringing", "2026-01-01T00:00:04Z"))
    assert row["status"] == "in-progress"
    row = apply(row, ev("call.canceled", "2026-01-01T00:00:05Z"))
    row = apply(row, ev("call.completed", "2026-01-01T00:00:06Z"))
    assert row["status"] == "canceled"


def test_unanswered_outcomes_have_zero_duration():
    for t, status in (("call.busy", "busy"), ("call.no-answer", "no-answer"), ("call.failed", "failed")):
        row = fold(QUEUED, ev("call.ringing", "2026-01-01T00:00:01Z"), ev(t, "2026-01-01T00:00:31Z", sip_code=486))
        assert row["status"] == status and row["duration"] == 0 and row["sip_code"] == 486


def test_input_row_is_not_mutated():
    row = fold(QUEUED)
    before = dict(row)
    apply(row, ev("call.ringing", "2026-01-01T00:00:01Z"))
    assert row == before


def test_gather_result_on_row():
    row = fold(QUEUED, ev("gather.completed", "2026-01-01T00:00:09Z", digits="1234", finished_on_key="#"))
    assert row["gather"] == {"status": "completed", "digits": "1234", "finished_on_key": "#", "speech": None}


def test_fold_of_a_batch_is_apply_event_by_event_and_leaves_the_stored_row_alone():
    from services.projector import calls

    later = [ev("call.ringing", "2026-01-01T00:00:01Z"), ev("call.answered", "2026-01-01T00:00:03Z"),
             ev("gather.completed", "2026-01-01T00:00:05Z", digits="12", finished_on_key="#"),
             ev("call.completed", "2026-01-01T00:00:45Z", reason="callee hung up", hangup_by="callee")]
    times = [calls.ts(e.occurred_at) for e in later]
    assert calls.fold(None, [QUEUED] + later, [calls.ts(QUEUED.occurred_at)] + times) == fold(QUEUED, *later)
    stored = fold(QUEUED)
    before = dict(stored)
    assert calls.fold(stored, later, times) == fold(QUEUED, *later)
    assert stored == before
