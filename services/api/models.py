"""Pydantic models of the public JSON shapes, used for the OpenAPI document.

Request bodies are parsed by hand (orjson + services.lib.intake) for speed and for
one error shape; these models describe the same contract for clients.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from events.catalog import DIGITS_PATTERN, MAX_TIME_LIMIT_S, DialOptions, Gather, StatusCallbackEvent, StreamOptions, Tts

Status = Literal["queued", "ringing", "in-progress", "completed", "busy", "no-answer", "failed", "canceled"]


class _Doc(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class ErrorDetail(_Doc):
    code: str = Field(description="machine-readable, e.g. invalid_phone_number, rate_limited")
    message: str
    field: str | None = Field(None, description="offending request field (dotted), if any")


class ErrorResponse(_Doc):
    error: ErrorDetail


class CallCreate(_Doc):
    """Body of POST /v1/voice/calls. Either `tts` or `audio_url` is required (or `flow`/`flow_id`, `dial`,
    or a bidirectional `stream`)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    to: str = Field(description="recipient, E.164", examples=["+15551234567"])
    from_: str = Field(alias="from", description="caller id: a verified number of your account",
                       examples=["+15559876543"])
    tts: Tts | None = Field(None, description="text-to-speech configuration (text may contain SSML)")
    audio_url: str | None = Field(None, max_length=2048, description="URL of an audio file to play (MP3, WAV)")
    record: bool = False
    transcribe: bool = False
    recording_channels: Literal["mono", "dual"] = "mono"
    gather: Gather | None = None
    webhook_url: str | None = Field(None, max_length=2048, description="URL for call status webhooks")
    transcribe_webhook_url: str | None = Field(
        None, max_length=2048, description="live transcripts (transcription.partial, transcription.completed)"
        " as webhooks to this URL; needs transcribe")
    transcribe_webhooks: bool = Field(False, description="live transcripts as webhooks to webhook_url; needs"
                                      " transcribe and webhook_url")
    transcribe_language: str | None = Field(
        None, max_length=35, description="language of the call's speech for transcription: a BCP-47 tag (es,"
        " pt-BR, ...) or auto (detect); default English", examples=["es-MX"])
    timeout: int = Field(30, ge=1, le=600, description="ring timeout in seconds")
    flow: dict[str, Any] | None = Field(None, description="inline IVR flow")
    flow_id: str | None = Field(None, description="id of a stored IVR flow")
    stream: StreamOptions | None = Field(
        None, description="a media stream to your WebSocket app for the whole call, from answer (Twilio Media"
        " Streams' protocol, see docs/media-streams.md); a bidirectional stream needs no tts/audio_url")
    dial: DialOptions | None = Field(
        None, description="click-to-call: once the call is answered (and its tts / audio_url played, if given),"
        " connect it to a second party, as a flow's dial step does: a call of its own (direction outbound-dial,"
        " parent_call_id), ringback meanwhile; the call hangs up when that call ends. Not with flow/flow_id")
    machine_detection: Literal["enable", "detect_message_end"] | None = Field(
        None, description="answering machine detection: enable (who answered) or detect_message_end (also wait "
                          "for the end of a voicemail greeting, so a message is left after the beep)")
    machine_detection_timeout: int = Field(30, ge=3, le=60, description="seconds to decide in (then: unknown)")
    async_amd: bool = Field(False, description="false: the prompt/flow waits for the result; true: it does not")
    amd_webhook_url: str | None = Field(None, max_length=2048,
                                        description="URL for the machine detection result (default: webhook_url)")
    status_callback_events: list[StatusCallbackEvent] | None = Field(
        None, description="which status webhooks to send (default: all): queued, ringing, in-progress (or "
                          "answered), completed, busy, no-answer, failed, canceled; unknown names are a 422")
    time_limit: int | None = Field(None, ge=1, le=MAX_TIME_LIMIT_S,
                                   description="maximum seconds once answered (default and maximum: 14400); "
                                               "the call then ends completed, end_reason `time_limit`")


class CallUpdate(_Doc):
    """Body of POST /v1/voice/calls/{id}: at least one change. A redirect (`flow`/`flow_id`) and a
    play (`tts`/`audio_url`) exclude each other; `status` goes alone."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    flow: dict[str, Any] | None = Field(None, description="redirect to this inline IVR flow")
    flow_id: str | None = Field(None, description="redirect to this stored IVR flow (its latest version)")
    step: str | None = Field(None, description="with flow/flow_id: the step to enter (default: its start)")
    tts: Tts | None = Field(None, description="play this text now")
    audio_url: str | None = Field(None, max_length=2048, description="play this audio file now (MP3, WAV)")
    interrupt: bool = Field(True, description="with tts/audio_url: true stops what plays and the running "
                                              "gather, script or flow step (the call hangs up after the new "
                                              "audio); false queues it after what plays")
    send_digits: str | None = Field(None, pattern=DIGITS_PATTERN,
                                    description="DTMF to send to the far end; `w` pauses half a second")
    recording: Literal["start", "pause", "resume", "stop"] | None = Field(
        None, description="paused spans are silence in the file, listed in the recording's paused_spans")
    hold: bool | None = Field(None, description="true: the call hears music on hold, and a second party a dial "
                                                "step connected it to waits in silence (neither hears the other); "
                                                "false: back to the conversation. Events: call.held, call.unheld")
    status: Literal["completed"] | None = Field(None, description="hang up (as POST /v1/voice/calls/{id}/hangup)")


class UpdateRef(_Doc):
    id: str | None = Field(description="the UpdateCall command's id (call.updated's update_id); null when "
                                       "a hangup was already asked for")
    changes: list[str]


class CallCreated(_Doc):
    id: str = Field(examples=["call_abc123xyz"])
    to: str
    from_: str = Field(alias="from")
    status: Literal["queued"] = "queued"
    direction: Literal["outbound", "inbound"] = "outbound"
    created_at: str = Field(examples=["2024-01-01T12:00:00Z"])


class RecordingRef(_Doc):
    id: str
    duration: int = Field(description="seconds")
    url: str = Field(description="signed, expiring download URL")


class Transcription(_Doc):
    text: str
    confidence: float


class GatherResult(_Doc):
    status: Literal["completed", "timeout"]
    digits: str = ""
    finished_on_key: str | None = None
    speech: dict[str, Any] | None = None


class Call(_Doc):
    id: str
    to: str | None
    from_: str | None = Field(alias="from")
    status: Status
    direction: Literal["outbound", "inbound", "outbound-dial"] = Field(
        description="outbound-dial: the second party of another call's flow `dial` step (see parent_call_id)")
    created_at: str
    updated_at: str
    answered_at: str | None = None
    ended_at: str | None = None
    duration: int | None = Field(None, description="seconds from answer to end")
    answered_by: str | None = Field(
        None, description="who answered, from machine detection: human, machine_start, machine_end_beep, "
                          "machine_end_silence, fax or unknown; null when the call did not ask for machine_detection")
    price: None = Field(None, description="always null: this service does not bill")
    end_reason: str | None = Field(None, description="why the call ended (the carrier's reason, else who hung up)")
    hangup_by: Literal["caller", "callee", "system"] | None = Field(
        None, description="who ended the call: caller (this side: the API, a flow), callee (the far end), system")
    sip_code: int | None = None
    recording: RecordingRef | None = None
    transcription: Transcription | None = None
    gather: GatherResult | None = None
    parent_call_id: str | None = Field(
        None, description="the call whose `dial` step placed this one (direction outbound-dial); null otherwise")


class CallUpdateAccepted(Call):
    update: UpdateRef


class CallList(_Doc):
    data: list[Call]
    has_more: bool
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page")


class CallEvent(_Doc):
    id: str
    type: str = Field(examples=["call.ringing"])
    version: int
    occurred_at: str
    trace_id: str = Field(examples=["4bf92f3577b34da6a3ce929d0e0e4736"], pattern="^[0-9a-f]{32}$",
                          description="The W3C trace id of the call's trace the event was emitted in: the one in"
                                      " the `traceparent` the call's POST answered with (and in the services'"
                                      " logs, exported spans and the webhooks' `traceparent`)")
    data: dict[str, Any]


class CallEventList(_Doc):
    call_id: str
    data: list[CallEvent]


class PausedSpan(_Doc):
    start_ms: int
    end_ms: int


class Recording(_Doc):
    id: str = Field(examples=["rec_xyz789"])
    call_id: str
    duration: int = Field(description="seconds")
    url: str
    transcription: Transcription | None = None
    paused_spans: list[PausedSpan] | None = Field(
        None, description="where the recording was paused (silence in the file); only on a recording that was paused")


class NumberCreate(_Doc):
    model_config = ConfigDict(extra="forbid")
    number: str = Field(description="E.164 caller id to verify", examples=["+15559876543"])


class SandboxCallIn(_Doc):
    """A sandbox caller dialling one of the account's numbers (sk_test_ keys)."""

    model_config = ConfigDict(extra="forbid")
    to: str = Field(description="the account's number (E.164) with a voice_url or flow_id")
    from_: str = Field(alias="from", description="the caller's number (E.164)", examples=["+15551230001"])
    after: float | str = Field(1.0, description="seconds after the answer before the caller acts (e.g. `2s`)")
    press: str = Field("", description="keys the caller presses, in order (0-9 * # A-D, at most 64)")
    say: str = Field("", description="a line the caller says (rendered by the TTS service)")
    say_voice: str | None = None
    hangup_after: float | str | None = Field(None, description="seconds after the answer the caller hangs up "
                                                               "(null: stays until the flow ends the call)")


class NumberVerify(_Doc):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(description="the 6-digit code the verification call spoke", examples=["123456"])


class Number(_Doc):
    number: str
    created_at: str
    verification: Literal["pending", "verified"] = Field(
        description="`verified`: this key's calls may use it as `from`; `pending`: a sk_live_ key's number "
                    "waiting for the code of its verification call (POST /v1/voice/numbers/{number}/verify)")
    voice_url: str | None = Field(None, description="incoming calls: POSTed to (signed) when a call comes in; "
                                                    "answers with the call's steps, as a flow webhook step does")
    flow_id: str | None = Field(None, description="incoming calls: run this stored flow (its latest version)")
    webhook_url: str | None = Field(None, description="status webhooks of the calls to this number")


class NumberRouteUpdate(_Doc):
    """How a number answers incoming calls; a field left out is unchanged, null clears it."""

    voice_url: str | None = None
    flow_id: str | None = None
    webhook_url: str | None = None


class NumberList(_Doc):
    data: list[Number]


class Voice(_Doc):
    id: str = Field(examples=["en-US-Neural2-F"])
    language: str
    language_name: str
    gender: str
    type: str
    engine: str
    note: str = ""


class VoiceList(_Doc):
    data: list[Voice]


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for the error statuses an operation can return."""
    desc = {400: "malformed JSON", 401: "missing or invalid API key", 403: "not allowed",
            404: "not found", 409: "conflict", 413: "body too large", 415: "content type must be application/json",
            422: "validation failed", 429: "rate limited (see Retry-After)",
            503: "a dependency is unreachable; nothing was accepted (see Retry-After)"}
    return {s: {"model": ErrorResponse, "description": desc.get(s, "error")} for s in statuses}
