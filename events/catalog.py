"""Every command and event type, with its payload model, version and an example.

Commands are imperative (PlaceCall) and go to voice.call.commands; events are
past-tense facts (call.ringing) and go to voice.call.events. Terminal call events are
named after the public call status they set: call.completed, call.busy,
call.no-answer, call.failed, call.canceled.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from events.registry import register

CALL_STATUSES = ("queued", "ringing", "in-progress", "completed", "busy", "no-answer", "failed", "canceled")
FINAL_STATUSES = ("completed", "busy", "no-answer", "failed", "canceled")
TERMINAL_EVENTS = {f"call.{s}": s for s in FINAL_STATUSES}


class _Command(BaseModel):
    # User input: unknown fields are an error, not silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Event(BaseModel):
    # Facts may gain fields in later versions; older readers keep working.
    model_config = ConfigDict(extra="allow", frozen=True)


def e164(value: str) -> str:
    """Normalise to E.164 or raise ValueError (shared by the API and Kafka intake)."""
    # Pure, and phonenumbers.parse costs ~35 us: the PlaceCall validators call it for
    # `to` and `from` on every call, so strings are memoised (errors are not cached).
    return _e164_cached(value) if type(value) is str else _e164(value)


def _e164(value: str) -> str:
    if not isinstance(value, str) or not value.startswith("+"):
        raise ValueError("must be an E.164 number starting with +")
    try:
        num = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from None
    if not phonenumbers.is_possible_number(num):
        raise ValueError("not a possible phone number")
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


_e164_cached = lru_cache(maxsize=65536)(_e164)


# --- parts of a call request -------------------------------------------------------

AMD_TIMEOUT_S, AMD_TIMEOUT_MIN_S, AMD_TIMEOUT_MAX_S = 30, 3, 60
ANSWERED_BY = ("human", "machine_start", "machine_end_beep", "machine_end_silence", "fax", "unknown")

class Tts(_Command):
    text: str = Field(min_length=1, max_length=5000)
    voice: str = "en-US-Neural2-F"
    speed: float = Field(1.0, ge=0.5, le=2.0)
    pitch: float = Field(0.0, ge=-20, le=20, description="semitones")


class Gather(_Command):
    type: Literal["dtmf", "speech", "dtmf speech"] = "dtmf"
    num_digits: int | None = Field(None, ge=1, le=64)
    finish_on_key: str = Field("#", pattern=r"^[0-9*#]?$")
    timeout: float = Field(5, gt=0, le=120, description="seconds to wait for the first input")
    inter_digit_timeout: float | None = Field(None, gt=0, le=60)
    webhook_url: str | None = None
    barge_in: bool = True
    hints: list[str] | None = None
    language: str | None = None


class StreamOptions(_Command):
    """A bidirectional media stream to the app's WebSocket (Twilio Media Streams' protocol)."""

    url: str = Field(max_length=2048, description="wss:// URL of the app (ws:// only in development)")
    track: Literal["inbound", "outbound", "both"] = Field(
        "inbound", description="what the app hears: the callee (inbound), what we play (outbound), or both")
    bidirectional: bool = Field(False, description="the app's media, mark and clear messages are played into the"
                                " call; the call stays up until the stream stops")
    parameters: dict[str, str] = Field(default_factory=dict, max_length=32,
                                       description="sent to the app in `start.customParameters`")

    @field_validator("parameters")
    @classmethod
    def _short_parameters(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            if not k or len(k) > 128 or len(val) > 1024:
                raise ValueError("parameter names are 1-128 characters, values at most 1024")
        return v
class DialOptions(_Command):
    """Connect the call, once answered (and after its tts / audio_url), to a second party: a
    flow's dial step as a call option (click-to-call)."""

    to: str = Field(max_length=256, description="the number (E.164) or SIP URI (sip:user@host) to connect to")
    caller_id: str | None = Field(None, description="what the second party sees: a verified number of the"
                                                    " account (default: the call's from)")
    timeout: int = Field(30, ge=1, le=600, description="seconds the second party may ring")
    record: bool = Field(False, description="record the conversation, dual-channel, from the connect")


# The status webhooks a call may ask for (`status_callback_events`): the public statuses,
# and `answered`, another name of in-progress (Twilio's).
STATUS_CALLBACK_EVENTS = (*CALL_STATUSES, "answered")
StatusCallbackEvent = Literal["queued", "ringing", "in-progress", "completed", "busy", "no-answer", "failed",
                              "canceled", "answered"]
MAX_TIME_LIMIT_S = 4 * 3600  # a call's time_limit and the default maximum duration once answered


class PlaceCallData(_Command):
    """Place an outbound call (the body of POST /v1/voice/calls, plus routing facts)."""

    to: str
    from_: str = Field(alias="from")
    tts: Tts | None = None
    audio_url: str | None = Field(None, max_length=2048)
    record: bool = False
    transcribe: bool = False
    recording_channels: Literal["mono", "dual"] = "mono"
    gather: Gather | None = None
    webhook_url: str | None = Field(None, max_length=2048)
    transcribe_webhook_url: str | None = Field(None, max_length=2048)
    transcribe_webhooks: bool = False
    transcribe_language: str | None = Field(None, max_length=35)
    timeout: int = Field(30, ge=1, le=600)
    flow: dict[str, Any] | None = None
    flow_id: str | None = None
    stream: StreamOptions | None = None
    dial: DialOptions | None = None
    carrier: Literal["sandbox", "sip"] = "sandbox"
    created_at: str | None = None
    # Answering machine detection (services/telephony/amd.py): who answered, a person or a machine.
    machine_detection: Literal["enable", "detect_message_end"] | None = Field(
        None, description="detect who answered; detect_message_end also waits for the greeting's end (beep)")
    # None, not 30, when not given: the API's command leaves it out, so the Kafka intake's
    # re-check (which refuses it without machine_detection) passes what the API passed.
    machine_detection_timeout: int | None = Field(
        None, ge=AMD_TIMEOUT_MIN_S, le=AMD_TIMEOUT_MAX_S,
        description=f"seconds of the callee's audio to decide in (default {AMD_TIMEOUT_S}); then answered_by is unknown")
    async_amd: bool = Field(False, description="false: the prompt or flow waits for the result; true: it does not")
    amd_webhook_url: str | None = Field(None, max_length=2048,
                                        description="where the result is POSTed (default: webhook_url)")
    status_callback_events: list[StatusCallbackEvent] | None = Field(
        None, description="which status webhooks to send (default: all); `answered` is `in-progress`")
    time_limit: int | None = Field(None, ge=1, le=MAX_TIME_LIMIT_S,
                                   description="maximum seconds once answered (default: 4 hours)")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    _e164_to = field_validator("to")(classmethod(lambda cls, v: e164(v)))
    _e164_from = field_validator("from_")(classmethod(lambda cls, v: e164(v)))

    @model_validator(mode="after")
    def _one_source(self) -> "PlaceCallData":
        sources = [x for x in (self.tts, self.audio_url, self.flow, self.flow_id, self.dial) if x is not None]
        if not sources and not (self.stream is not None and self.stream.bidirectional):
            raise ValueError("either tts or audio_url is required")
        if self.tts is not None and self.audio_url is not None:
            raise ValueError("give tts or audio_url, not both")
        if self.dial is not None and (self.flow is not None or self.flow_id is not None):
            raise ValueError("give dial or a flow, not both (a flow has a dial step)")
        return self


EXAMPLE_REQUEST = {
    "to": "+15551234567",
    "from": "+15559876543",
    "tts": {"text": "Hello! This is a call from Canary. Press 1 to confirm.", "voice": "en-US-Neural2-F"},
}

register("PlaceCall", kind="command", example={**EXAMPLE_REQUEST, "carrier": "sandbox"})(PlaceCallData)


@register("HangupCall", kind="command", example={"reason": "api"})
class HangupCallData(_Command):
    """Hang up a live call, or cancel one that is queued or ringing."""

    reason: str = "api"


DIGITS_PATTERN = r"^[0-9*#A-Dw]{1,32}$"  # `w`: a half-second pause between digits (Twilio's)
UPDATE_CHANGES = ("flow", "flow_id", "tts", "audio_url", "send_digits", "recording", "hold", "status")  # an update's changes
RECORDING_ACTIONS = ("start", "pause", "resume", "stop")


class UpdateCallData(_Command):
    """Change a live call: redirect it to another flow, play now, send digits, control its
    recording, or hang it up (the body of POST /v1/voice/calls/{id})."""

    flow: dict[str, Any] | None = Field(None, description="redirect to this inline IVR flow")
    flow_id: str | None = Field(None, description="redirect to this stored IVR flow (its latest version)")
    step: str | None = Field(None, min_length=1, max_length=100,
                             description="with flow/flow_id: the step to enter (default: the flow's start)")
    tts: Tts | None = Field(None, description="play this text now")
    audio_url: str | None = Field(None, max_length=2048, description="play this audio file now")
    interrupt: bool = Field(True, description="with tts/audio_url: stop what plays and the running gather, "
                                              "script or flow step (true), or queue after what plays (false)")
    send_digits: str | None = Field(None, pattern=DIGITS_PATTERN,
                                    description="DTMF to send to the far end (RFC 4733 on SIP, in-band tones "
                                                "otherwise); `w` pauses half a second")
    recording: Literal["start", "pause", "resume", "stop"] | None = None
    hold: bool | None = Field(None, description="true: this call hears music on hold and, when a dial step "
                                                "connected it to a second party, neither hears the other; "
                                                "false: back to the conversation")
    status: Literal["completed"] | None = Field(None, description="`completed`: hang up (as POST .../hangup)")

    @model_validator(mode="after")
    def _coherent(self) -> "UpdateCallData":
        if not self.changes():
            raise ValueError("an update needs at least one change")
        return self

    def changes(self) -> list[str]:
        """The changes asked for, by public field name."""
        return [k for k in UPDATE_CHANGES if getattr(self, k) is not None]


register("UpdateCall", kind="command", example={"tts": {"text": "Please hold, connecting you now."},
                                                 "interrupt": True})(UpdateCallData)


# --- call lifecycle ----------------------------------------------------------------

@register("call.queued", example={**EXAMPLE_REQUEST, "direction": "outbound", "record": False,
                                  "created_at": "2024-01-01T12:00:00Z", "carrier": "sandbox"})
class CallQueued(_Event):
    """The request was accepted and the call waits to be dialled."""

    to: str
    from_: str = Field(alias="from")
    direction: Literal["outbound", "inbound", "outbound-dial"] = Field(
        "outbound", description="outbound-dial: the second party of another call's dial step")
    created_at: str
    carrier: str = "sandbox"
    parent_call_id: str | None = Field(None, description="outbound-dial: the call whose dial step placed this one")
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


@register("call.received", example={"to": "+15559876543", "from": "+15551230001", "carrier": "sip",
                                    "voice_url": "https://example.com/voice",
                                    "sip": {"call_id": "a84b4c76e66710@pc33.example.com", "source": "203.0.113.5"}})
class CallReceived(_Event):
    """A call came in to one of the account's numbers (the gateway took a SIP INVITE, or a sandbox
    caller dialled); the orchestrator answers it with the number's flow."""

    to: str = Field(description="the account's number that was dialled")
    from_: str = Field(alias="from", description="the caller, as the network gave it")
    carrier: str = "sip"
    voice_url: str | None = Field(None, description="the number's app: asked for the call's steps")
    flow_id: str | None = Field(None, description="the number's stored flow (its latest version is run)")
    webhook_url: str | None = Field(None, description="the number's status webhooks")
    caller: dict[str, Any] | None = Field(None, description="sandbox: what the scripted caller does "
                                                             "(after, press, say, hangup_after)")
    sip: dict[str, Any] | None = Field(None, description="SIP: the INVITE's Call-ID and source address")
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


@register("call.rejected", example={"errors": [{"code": "invalid_phone_number", "field": "to",
                                                "message": "not a possible phone number"}]})
class CallRejected(_Event):
    """A PlaceCall was refused; nothing will be dialled."""

    errors: list[dict[str, Any]]


@register("call.ringing", example={"early_media": False})
class CallRinging(_Event):
    """The callee's phone is ringing."""

    early_media: bool = False


@register("call.answered", example={"answered_by": None})
class CallAnswered(_Event):
    """The callee answered; media flows."""

    answered_by: str | None = Field(
        None, description="null: who answered is not known here (machine detection reports it separately, "
                          "as machine_detection.completed); events written before it existed say human")


@register("machine_detection.completed", example={"answered_by": "machine_end_beep", "mode": "detect_message_end",
                                                   "decision_ms": 6140, "beep_ms": 5480})
class MachineDetectionCompleted(_Event):
    """Answering machine detection decided who answered the call."""

    answered_by: Literal[ANSWERED_BY]  # type: ignore[valid-type]
    mode: Literal["enable", "detect_message_end"] = "enable"
    decision_ms: int = Field(ge=0, description="call time from answer to the decision")
    beep_ms: int | None = Field(None, ge=0, description="call time from answer to the beep's recognition")


class _Ended(_Event):
    reason: str = ""
    sip_code: int | None = None
    hangup_by: str | None = None
    duration: int | None = Field(None, description="seconds from answer to end")


for _status in FINAL_STATUSES:
    register(f"call.{_status}", example={"reason": "callee hung up" if _status == "completed" else _status,
                                          "hangup_by": "callee", "duration": 12 if _status == "completed" else 0})(
        type(f"Call{_status.title().replace('-', '')}", (_Ended,), {"__doc__": f"The call ended with status {_status}."}))


class RecordOptions(_Event):
    """How a call is recorded: both directions mixed or one per channel, and transcribed or not
    (in `language`: a BCP-47 tag, 'auto', or null for English)."""

    channels: Literal["mono", "dual"] = "mono"
    transcribe: bool = False
    language: str | None = None


class MachineDetectionOptions(_Event):
    """How the gateway detects who answered (the call's machine_detection options)."""

    mode: Literal["enable", "detect_message_end"] = "enable"
    timeout: int = AMD_TIMEOUT_S


@register("dial.requested", example={"to": "+15551234567", "from": "+15559876543", "timeout": 30,
                                     "carrier": "sandbox"})
class DialRequested(_Event):
    """Instruction to the telephony gateway: place the call now."""

    to: str
    from_: str = Field(alias="from")
    timeout: int = 30
    carrier: str = "sandbox"
    record: RecordOptions | None = Field(
        None, description="record from the instant of answer (the call's record option): channels, transcribe")
    stream: StreamOptions | None = Field(None, description="open this media stream at the instant of answer")
    machine_detection: MachineDetectionOptions | None = Field(
        None, description="run answering machine detection on the callee's audio from answer")
    direction: Literal["outbound", "inbound", "outbound-dial"] = Field(
        "outbound", description="inbound: answer the call that came in (call.received) instead of dialling; "
                                "outbound-dial: a dial step's second party (see parent_call_id)")
    parent_call_id: str | None = Field(
        None, description="outbound-dial: connect this call to that one, which must be on the same gateway: it "
                          "hears ringback until this one answers, then the two hear each other")
    parent_record: RecordOptions | None = Field(
        None, description="outbound-dial: record the parent (dual: the parent's party left, this call right) "
                          "from the instant the two are connected")
    caller: dict[str, Any] | None = Field(None, description="inbound sandbox call: the scripted caller")
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


@register("hangup.requested", example={"reason": "api"})
class HangupRequested(_Event):
    """Instruction to the telephony gateway: end (or cancel) the call."""

    reason: str = "api"
    status: Literal["completed", "no-answer", "failed", "canceled"] | None = Field(
        None, description="terminal status to report; default: completed if answered, else canceled")
    end_reason: str | None = Field(
        None, description="the reason the call's terminal event reports (e.g. time_limit); default: the carrier's")


@register("call.updated", example={"changes": ["tts"], "interrupt": True, "update_id": "5b0c4c3e-4e0e-5d7b-8f"
                                   "a1-9f2b0c6d1e2a", "skipped": []})
class CallUpdated(_Event):
    """A live call was changed (UpdateCall): what changed, and what could not be applied."""

    changes: list[str] = Field(description="the fields of the update: flow, flow_id, tts, audio_url, send_digits, "
                                           "recording, hold, status")
    update_id: str = Field(description="id of the UpdateCall command")
    interrupt: bool | None = None
    flow_id: str | None = None
    flow_version: int | None = None
    step: str | None = None
    send_digits: str | None = None
    recording: str | None = None
    hold: bool | None = None
    status: str | None = None
    skipped: list[dict[str, Any]] = Field([], description="changes not applied, each {field, code, message} "
                                                          "(e.g. recording pause on a call not recording)")


@register("interrupt.requested", example={"reason": "update"})
class InterruptRequested(_Event):
    """Instruction to the gateway: stop what plays and end the open gather, silently (an update
    replaced the call's script); play and gather instructions sent before it are dropped."""

    reason: str = "update"


@register("dtmf.send.requested", example={"digits": "1234#"})
class DtmfSendRequested(_Event):
    """Instruction to the gateway: send DTMF to the far end."""

    digits: str = Field(pattern=DIGITS_PATTERN)


@register("hold.requested", example={"hold": True})
class HoldRequested(_Event):
    """Instruction to the gateway: put the call on hold (music; its bridge, if any, paused) or take it off."""

    hold: bool


@register("call.held", example={"bridged": True})
class CallHeld(_Event):
    """The call hears music on hold; with `bridged`, its second party and it no longer hear each other."""

    bridged: bool = Field(description="the call was connected to a second party (a dial step), now paused")


@register("call.unheld", example={"bridged": True})
class CallUnheld(_Event):
    """The call is off hold: the conversation (or its flow's audio) again."""

    bridged: bool = Field(description="the call is connected to its second party again")


@register("dtmf.sent", example={"digits": "1234#", "method": "rfc4733"})
class DtmfSent(_Event):
    """The gateway sent DTMF to the far end (rfc4733 or inband tones)."""

    digits: str
    method: str = "rfc4733"


@register("sandbox.dtmf.heard", example={"digits": "1234#"})
class SandboxDtmfHeard(_Event):
    """What a sandbox callee decoded from the in-band tones it was sent (Goertzel detector)."""

    digits: str


# --- media ---------------------------------------------------------------------------

@register("tts.requested", example={"text": "Hello", "voice": "en-US-Neural2-F", "speed": 1.0, "pitch": 0})
class TtsRequested(_Event):
    """Render a prompt to telephone audio."""

    text: str
    voice: str = "en-US-Neural2-F"
    speed: float = 1.0
    pitch: float = 0.0


@register("tts.rendered", example={"audio_ref": "sha256:ab12.wav", "duration_ms": 2300,
                                   "voice": "en-US-Neural2-F", "cache_hit": False})
class TtsRendered(_Event):
    """A prompt was rendered and stored."""

    audio_ref: str
    duration_ms: int
    voice: str | None = None
    cache_hit: bool = False


@register("tts.failed", example={"reason": "unknown voice"})
class TtsFailed(_Event):
    """A prompt could not be rendered."""

    reason: str


@register("audio.requested", example={"url": "https://example.com/prompt.mp3"})
class AudioRequested(_Event):
    """Fetch and transcode an audio_url."""

    url: str


@register("audio.fetched", example={"audio_ref": "sha256:cd34.wav", "duration_ms": 5000})
class AudioFetched(_Event):
    """An audio_url was fetched and transcoded to 8 kHz."""

    audio_ref: str
    duration_ms: int


@register("audio.failed", example={"reason": "HTTP 404"})
class AudioFailed(_Event):
    """An audio_url could not be fetched or decoded."""

    reason: str


@register("sandbox.speech.requested", example={"text": "I have a question about billing.",
                                              "voice": "en-US-Neural2-D"})
class SandboxSpeechRequested(_Event):
    """The sandbox carrier asks the TTS service to render a line its scripted callee says."""

    text: str
    voice: str = "en-US-Neural2-D"


@register("sandbox.speech.rendered", example={"audio_ref": "sha256:ef56.wav", "duration_ms": 2100,
                                             "voice": "en-US-Neural2-D", "cache_hit": True})
class SandboxSpeechRendered(_Event):
    """A scripted callee's line was rendered and stored (content-addressed, cached like prompts)."""

    audio_ref: str
    duration_ms: int
    voice: str | None = None
    cache_hit: bool = False


@register("sandbox.speech.failed", example={"reason": "unknown voice"})
class SandboxSpeechFailed(_Event):
    """A scripted callee's line could not be rendered; the callee stays silent."""

    reason: str


@register("play.requested", example={"audio_ref": "sha256:ab12.wav", "barge_in": True, "step": "main"})
class PlayRequested(_Event):
    """Instruction to the gateway: play audio to the callee."""

    audio_ref: str
    barge_in: bool = True
    step: str | None = None


@register("prompt.finished", example={"interrupted": False, "step": "main"})
class PromptFinished(_Event):
    """The gateway finished (or was interrupted) playing a prompt."""

    interrupted: bool = False
    step: str | None = None


@register("gather.requested", example={"type": "dtmf", "num_digits": 4, "finish_on_key": "#", "timeout": 10})
class GatherRequested(_Event):
    """Instruction to the gateway: collect DTMF and/or speech."""

    type: str = "dtmf"
    num_digits: int | None = None
    finish_on_key: str = "#"
    timeout: float = 5
    inter_digit_timeout: float | None = None
    hints: list[str] | None = None
    language: str | None = None
    step: str | None = None


@register("dtmf.received", example={"digit": "1", "method": "rfc4733"})
class DtmfReceived(_Event):
    """The callee pressed a key."""

    digit: str = Field(pattern=r"^[0-9*#A-D]$")
    method: str = "rfc4733"


@register("gather.completed", example={"digits": "1234", "finished_on_key": "#"})
class GatherCompleted(_Event):
    """Input was collected (digits and/or speech)."""

    digits: str = ""
    finished_on_key: str | None = None
    speech: dict[str, Any] | None = None
    step: str | None = None


@register("gather.timeout", example={"digits": ""})
class GatherTimeout(_Event):
    """No (complete) input arrived in time."""

    digits: str = ""
    step: str | None = None


@register("speech.recognized", example={"gather_id": "7d1f0b7e-3c3a-5d43-9a51-2f3e8a1c0d42", "step": "menu",
                                       "text": "I have a question about billing.", "confidence": 0.87,
                                       "matched_hint": "billing", "language": "en", "offset_ms": 4200,
                                       "duration_ms": 3100})
class SpeechRecognized(_Event):
    """The callee's utterance in a speech gather, endpointed and recognised by the transcription service."""

    gather_id: str = Field(description="id of the gather.requested event this answers")
    step: str | None = None
    text: str = ""
    confidence: float = Field(0.0, ge=0, le=1)
    matched_hint: str | None = Field(None, description="the gather's hint closest to the text, if close enough")
    error: str | None = Field(None, description="set when recognition failed (text is then empty)")
    language: str | None = None
    offset_ms: int = Field(0, description="where the utterance starts in the call's audio stream")
    duration_ms: int = 0


@register("record.requested", example={"channels": "dual"})
class RecordRequested(RecordOptions):
    """Instruction to the gateway: record the call."""


@register("record.control.requested", example={"action": "pause"})
class RecordControlRequested(_Event):
    """Instruction to the gateway: pause, resume or stop the call's recording."""

    action: Literal["pause", "resume", "stop"]


class PausedSpan(_Event):
    """A stretch of a recording that was paused: silence in the file."""

    start_ms: int = Field(ge=0)
    end_ms: int = Field(ge=0)


@register("recording.paused", example={"offset_ms": 4200})
class RecordingPaused(_Event):
    """The recording was paused; until resumed it records silence."""

    offset_ms: int = Field(0, description="where in the recording")


@register("recording.resumed", example={"offset_ms": 9800})
class RecordingResumed(_Event):
    """The recording was resumed."""

    offset_ms: int = Field(0, description="where in the recording")


@register("recording.captured", example={"callee_ref": "sha256:1.raw", "agent_ref": "sha256:2.raw",
                                         "channels": "dual", "duration_ms": 12000})
class RecordingCaptured(_Event):
    """Raw audio of both directions was captured when the call ended."""

    callee_ref: str
    agent_ref: str
    channels: Literal["mono", "dual"] = "mono"
    duration_ms: int = 0
    transcribe: bool = False
    language: str | None = None  # of the transcript asked (transcribe_language)
    paused_spans: list[PausedSpan] = Field([], description="where the recording was paused (silence)")


@register("recording.completed", example={"recording_id": "rec_xyz789", "wav_ref": "sha256:3.wav",
                                          "mp3_ref": "sha256:4.mp3", "duration_ms": 45000,
                                          "size_bytes": 720000, "sha256": "ab" * 32, "channels": "dual"})
class RecordingCompleted(_Event):
    """The recording was encoded and stored."""

    recording_id: str
    wav_ref: str
    mp3_ref: str | None = None
    duration_ms: int
    size_bytes: int = 0
    sha256: str = ""
    channels: str = "mono"
    transcribe: bool = False
    language: str | None = None  # of the transcript asked (transcribe_language)
    paused_spans: list[PausedSpan] = Field([], description="where the recording was paused (silence)")


@register("transcription.partial", example={"text": "hello this is", "offset_ms": 1200})
class TranscriptionPartial(_Event):
    """Real-time transcript of the utterance in progress (final=true once it ended)."""

    text: str
    offset_ms: int = 0
    channel: str = "callee"
    final: bool = False
    utterance: int = 0
    duration_ms: int = 0


@register("transcription.completed", example={"recording_id": "rec_xyz789",
                                              "text": "Hello, this is a recorded message...",
                                              "confidence": 0.95, "segments": []})
class TranscriptionCompleted(_Event):
    """The whole call was transcribed."""

    recording_id: str | None = None
    text: str
    confidence: float = Field(ge=0, le=1)
    segments: list[dict[str, Any]] = []
    language: str | None = None


@register("flow.step.entered", example={"step": "main_menu", "kind": "gather"})
class FlowStepEntered(_Event):
    """An IVR flow moved to a step."""

    step: str
    kind: str


@register("timer.fired", example={"timer": "ring_timeout", "token": "abc"})
class TimerFired(_Event):
    """A durable timer set by the orchestrator expired."""

    timer: str
    token: str = ""


@register("recording.failed", example={"reason": "no audio captured"})
class RecordingFailed(_Event):
    """The captured audio could not be encoded or stored."""

    reason: str


@register("transcription.failed", example={"recording_id": "rec_xyz789", "reason": "model not available"})
class TranscriptionFailed(_Event):
    """A recording could not be transcribed."""

    recording_id: str | None = None
    reason: str


@register("flow.webhook.requested", example={"url": "https://example.com/ivr/billing", "step": "billing",
                                             "digits": "3", "speech": None})
class FlowWebhookRequested(_Event):
    """A flow's webhook step: ask the customer's app which steps to run next."""

    url: str
    step: str
    digits: str | None = None
    speech: str | None = None


@register("flow.webhook.answered", example={"step": "billing", "steps": [{"kind": "say", "text": "Your balance is 5 dollars."}]})
class FlowWebhookAnswered(_Event):
    """The app answered a webhook step with steps to run."""

    step: str
    steps: list[dict[str, Any]] = []


@register("flow.webhook.failed", example={"step": "billing", "reason": "HTTP 500"})
class FlowWebhookFailed(_Event):
    """The app could not be asked (or answered nonsense); the flow goes on to the step's next."""

    step: str
    reason: str


# --- media streams (docs/media-streams.md) --------------------------------------------

_STREAM = {"stream_sid": "MZ5f1c0d3a9b8e4f2a8c7d6e5f4a3b2c1d", "url": "wss://bot.example.com/media",
           "track": "inbound", "bidirectional": True}


@register("stream.requested", example={"url": "wss://bot.example.com/media", "track": "inbound",
                                      "bidirectional": True, "parameters": {"lang": "en"}, "step": "bot"})
class StreamRequested(_Event):
    """Instruction to the gateway: open a media stream now (a flow's stream step)."""

    url: str
    track: Literal["inbound", "outbound", "both"] = "inbound"
    bidirectional: bool = False
    parameters: dict[str, str] = {}
    step: str | None = None


class _StreamFact(_Event):
    stream_sid: str
    url: str = Field(description="the app's URL without query or fragment")
    track: str = "inbound"
    bidirectional: bool = False
    step: str | None = None


@register("stream.started", example={**_STREAM, "parameters": {"lang": "en"}})
class StreamStarted(_StreamFact):
    """The app's WebSocket accepted the stream; `connected` and `start` were sent."""

    parameters: dict[str, str] = {}


class _StreamEnd(_StreamFact):
    reason: str
    frames_sent: int = Field(0, description="media messages sent to the app")
    frames_received: int = Field(0, description="media messages the app sent to be played")
    frames_dropped: int = Field(0, description="frames to the app shed because it read too slowly")
    frames_shed: int = Field(0, description="frames of the app's audio shed because it sent too far ahead")


@register("stream.stopped", example={**_STREAM, "reason": "call ended", "frames_sent": 1500,
                                    "frames_received": 900, "frames_dropped": 0, "frames_shed": 0})
class StreamStopped(_StreamEnd):
    """The stream ended normally: the call ended, or the app closed it (code 1000/1001)."""


@register("stream.failed", example={**_STREAM, "reason": "connect failed: ConnectionRefusedError: [Errno 111]"
                                                          " Connect call failed"})
class StreamFailed(_StreamEnd):
    """The stream could not be opened (refused, bad URL, timeout) or ended with an error; the call goes on."""


# --- dialling a second party (a flow's dial step) ------------------------------------

DIAL_OUTCOMES = ("completed", "busy", "no-answer", "failed")


@register("call.leg.requested", example={"parent_call_id": "call_abc123xyz", "to": "+15557770010",
                                         "from": "+15559876543", "timeout": 30, "carrier": "sandbox",
                                         "step": "agent", "tag": "agent#2"})
class CallLegRequested(_Event):
    """A call's dial step asked for a second call (this one, keyed by its own id); the orchestrator
    places it and connects it to `parent_call_id`."""

    parent_call_id: str
    to: str = Field(description="E.164 number or SIP URI")
    from_: str = Field(alias="from", description="the caller ID the second party sees")
    timeout: int = Field(30, ge=1, le=600, description="seconds to ring")
    carrier: str = "sandbox"
    step: str = Field(description="the parent's dial step")
    tag: str = Field(description="the parent's step entry, `<step>#<n>`")
    record: RecordOptions | None = Field(None, description="the step records the parent once the two are connected")
    transfer: bool = Field(False, description="a sandbox call's transfer step dials its target this way (bridged):"
                                              " the parent reports the outcome as transfer.completed / .failed")
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


@register("dial.started", example={"child_call_id": "call_2f3e8a1c0d42", "to": "+15557770010",
                                   "from": "+15559876543", "timeout": 30, "record": False, "step": "agent",
                                   "tag": "agent#2"})
class DialStarted(_Event):
    """The call's dial step places a second call (`child_call_id`); the caller hears ringback."""

    child_call_id: str
    to: str
    from_: str = Field(alias="from")
    timeout: int = 30
    record: bool = Field(False, description="the connected conversation is recorded (dual-channel)")
    step: str
    tag: str
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


@register("dial.answered", example={"child_call_id": "call_2f3e8a1c0d42", "step": "agent", "tag": "agent#2"})
class DialAnswered(_Event):
    """The second party answered: the two calls are connected."""

    child_call_id: str
    step: str
    tag: str
    transfer: bool = Field(False, description="the second call is a sandbox transfer's target (bridged)")


@register("dial.ended", example={"child_call_id": "call_2f3e8a1c0d42", "outcome": "completed",
                                 "reason": "callee hung up", "duration": 42, "step": "agent", "tag": "agent#2"})
class DialEnded(_Event):
    """The second call ended (`outcome`: completed, busy, no-answer or failed); the flow goes on at that branch."""

    child_call_id: str
    outcome: Literal[DIAL_OUTCOMES]  # type: ignore[valid-type]
    reason: str = ""
    duration: int | None = Field(None, description="seconds the two calls were connected")
    step: str
    tag: str
    transfer: bool = Field(False, description="the second call is a sandbox transfer's target (bridged)")


# --- blind transfer (a flow's transfer step) -------------------------------------------

@register("transfer.requested", example={"to": "tel:+15557770010", "step": "agent", "tag": "agent#2"})
class TransferRequested(_Event):
    """The call's transfer step asks the gateway to hand the call over to `to` (a blind transfer)."""

    to: str = Field(description="E.164 number, tel: or sip: URI, as the step gave it")
    step: str
    tag: str = Field(description="the step entry, `<step>#<n>`")


@register("transfer.started", example={"to": "tel:+15557770010", "refer_to": "tel:+15557770010",
                                       "step": "agent", "tag": "agent#2"})
class TransferStarted(_Event):
    """The transfer started: SIP, the REFER is sent; the sandbox, the target is dialled as a second
    call (`child_call_id`) the gateway bridges the transferee to."""

    to: str
    refer_to: str | None = Field(None, description="the URI the far end was asked to call (SIP: Refer-To)")
    child_call_id: str | None = Field(None, description="the sandbox: the second call placed to the target")
    step: str
    tag: str


@register("transfer.progressed", example={"code": 180, "reason": "Ringing", "step": "agent", "tag": "agent#2"})
class TransferProgressed(_Event):
    """How the transfer goes: the REFER accepted (202), then the far end's call to the target
    (SIP: each NOTIFY's sipfrag, 100 Trying, 180 Ringing...)."""

    code: int | None = None
    reason: str = ""
    step: str
    tag: str


@register("transfer.completed", example={"to": "tel:+15557770010", "code": 200, "reason": "OK",
                                         "step": "agent", "tag": "agent#2"})
class TransferCompleted(_Event):
    """The far end is connected to the target: the call leaves us (it ends completed, transferred)."""

    to: str
    code: int | None = Field(None, description="the SIP status of the far end's call to the target (sipfrag)")
    reason: str = ""
    step: str
    tag: str


@register("transfer.failed", example={"to": "tel:+15557770010", "code": 486, "reason": "Busy Here",
                                      "step": "agent", "tag": "agent#2"})
class TransferFailed(_Event):
    """The transfer did not happen (refused, busy, unanswered, ...): the call is still up and its
    flow goes on at the step's `on_failed`, else `next`."""

    to: str
    code: int | None = Field(None, description="the SIP status that ended it, when there is one")
    reason: str = ""
    step: str
    tag: str
