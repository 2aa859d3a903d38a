"""Request parameter types (``TypedDict``s: pass plain dicts, get editor completion)."""

from __future__ import annotations

import sys
from typing import Any, Dict, Literal, Union

if sys.version_info >= (3, 11):
    from typing import NotRequired, Required, TypedDict
else:  # pragma: no cover
    from typing_extensions import NotRequired, Required, TypedDict

__all__ = ["TtsParams", "GatherParams", "FlowParams", "RecordingChannels", "GatherType", "CallStatus",
           "RecordingAction", "StatusCallbackEvent"]

RecordingChannels = Literal["mono", "dual"]
MachineDetection = Literal["enable", "detect_message_end"]
GatherType = Literal["dtmf", "speech", "dtmf speech"]
CallStatus = Literal[
    "queued", "ringing", "in-progress", "completed", "busy", "no-answer", "failed", "canceled"
]


# calls.update(recording=...)
RecordingAction = Literal["start", "pause", "resume", "stop"]
# calls.create(status_callback_events=[...]): the status webhooks to send (default: all)
StatusCallbackEvent = Literal[
    "queued", "ringing", "in-progress", "answered", "completed", "busy", "no-answer", "failed", "canceled"
]


class TtsParams(TypedDict, total=False):
    text: Required[str]
    voice: str
    speed: float
    pitch: float


class GatherParams(TypedDict, total=False):
    type: GatherType
    num_digits: int
    finish_on_key: str
    timeout: float
    webhook_url: str
    inter_digit_timeout: float
    barge_in: bool
    language: str
    hints: list


FlowParams = Dict[str, Any]

# Request bodies are plain dicts; this alias documents what ``tts=`` accepts.
TtsInput = Union[TtsParams, Dict[str, Any]]
GatherInput = Union[GatherParams, Dict[str, Any]]
_ = NotRequired  # re-exported for users who extend the TypedDicts
