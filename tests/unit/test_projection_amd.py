"""The call row's answered_by: null unless machine detection says (services/projector/calls.py)."""

from __future__ import annotations

from tests.unit.test_projection import QUEUED, apply, ev, fold

ANSWERED = ev("call.answered", "2026-01-01T00:00:03Z", answered_by=None)


def test_answered_by_is_null_without_detection():
    assert fold(QUEUED, ANSWERED)["answered_by"] is None
    assert fold(QUEUED, ev("call.answered", "2026-01-01T00:00:03Z"))["answered_by"] is None  # key absent


def test_the_detection_result_is_the_calls_answered_by():
    row = fold(QUEUED, ANSWERED, ev("machine_detection.completed", "2026-01-01T00:00:06Z",
                                    answered_by="machine_end_beep", mode="detect_message_end", decision_ms=3100))
    assert row["answered_by"] == "machine_end_beep" and row["status"] == "in-progress"
    row = apply(row, ev("call.completed", "2026-01-01T00:00:30Z", reason="hung up by caller"))
    assert row["answered_by"] == "machine_end_beep"


def test_events_written_before_detection_existed_still_say_human():
    assert fold(QUEUED, ev("call.answered", "2026-01-01T00:00:03Z", answered_by="human"))["answered_by"] == "human"


def test_the_options_keep_the_detection_request():
    q = ev("call.queued", "2026-01-01T00:00:00Z", to="+15551234567", **{"from": "+15559876543"},
           created_at="2026-01-01T00:00:00Z", tts={"text": "hi"}, machine_detection="enable", async_amd=True,
           machine_detection_timeout=10, amd_webhook_url="https://app.example/amd")
    assert fold(q)["options"] == {"tts": {"text": "hi"}, "machine_detection": "enable",
                                  "machine_detection_timeout": 10, "async_amd": True}


def test_the_first_result_is_the_calls():
    row = fold(QUEUED, ANSWERED,
               ev("machine_detection.completed", "2026-01-01T00:00:38Z", answered_by="unknown", decision_ms=35000),
               ev("machine_detection.completed", "2026-01-01T00:00:39Z", answered_by="human", decision_ms=36000))
    assert row["answered_by"] == "unknown"
