"""PlaceCall and UpdateCall validation shared by the HTTP API and the orchestrator's Kafka intake.

Kafka producers can bypass the API, so the orchestrator re-validates every PlaceCall
with the same function the API uses: whatever the HTTP API refuses, the Kafka intake
refuses too (as a ``call.rejected`` event + a ``voice.dlq`` record), with the same codes.

    payload, errors = await check_place_call(data, account_id, lookup)

``lookup`` answers "is this caller id verified for this account?": a sync or async
callable ``lookup(account_id, number) -> bool`` (e.g.
:class:`services.common.accounts.VerifiedNumbers`, which caches per account).

Errors are dicts ``{"code", "field", "message"}`` (``field`` uses the public JSON names,
dotted for nested fields, e.g. ``tts.voice``; None when the whole request is at fault).
Machine detection: ``machine_detection`` enable | detect_message_end, its timeout in
[3, 60] s, ``async_amd`` a boolean, ``amd_webhook_url`` SSRF-checked like every webhook URL;
the last three are refused (invalid_field) on a call without ``machine_detection``.

Codes: invalid_request, missing_field, unknown_field, invalid_field, conflicting_fields,
invalid_phone_number, number_not_verified, invalid_voice, invalid_ssml, invalid_url
(``stream.url`` too: wss only, ws in development, the SSRF rules of every customer URL); for
an update (``check_update_call``) also empty_update and invalid_step.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from events.catalog import UPDATE_CHANGES, PlaceCallData, UpdateCallData
from services.common.text import nul_path
from services.common.accounts import call_lookup

_SOURCES = ("tts", "audio_url", "flow", "flow_id", "dial")
_PHONE_FIELDS = ("to", "from")
_PYDANTIC_CODES = {
    "missing": "missing_field",
    "extra_forbidden": "unknown_field",
}


def _err(code: str, field: str | None, message: str) -> dict[str, Any]:
    return {"code": code, "field": field, "message": message}


def _pydantic_errors(exc: ValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors(include_url=False):
        loc = [str(p) for p in e["loc"]]
        field = ".".join(loc) or None
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        code = _PYDANTIC_CODES.get(e["type"], "invalid_field")
        if field in _PHONE_FIELDS and e["type"] == "value_error":
            code = "invalid_phone_number"
        out.append(_err(code, field, msg))
    return out


def _model_errors(model: Any, data: dict[str, Any], errors: list[dict[str, Any]]) -> tuple[Any, list[dict]]:
    """Validate ``data`` with ``model`` (strict) and the TTS checks; the errors of both, the
    more precise one kept where they overlap."""
    tts_errors = _tts_errors(data["tts"]) if data.get("tts") is not None else []
    tts_fields = {e["field"] for e in tts_errors}
    out: Any = None
    try:
        out = model.model_validate(data, strict=True)
    except ValidationError as exc:
        for e in _pydantic_errors(exc):
            if e["field"] is None and errors:
                continue  # a model-level rule, already reported precisely
            if e["field"] in tts_fields or (e["field"] == "tts" and tts_errors):
                continue  # the TTS service's message is the more precise one
            errors.append(e)
    errors.extend(tts_errors)
    return out, errors


def _tts_errors(tts: Any) -> list[dict[str, Any]]:
    """Voice / SSML / range checks (services.lib.voices, imported on first use: ~0.3 s)."""
    from services.lib.voices.validate import validate_tts

    out = []
    for p in validate_tts(tts):
        field = p.get("field") or "tts"
        msg = p.get("message", "invalid tts")
        if "allowed" in p:
            code = "invalid_voice"
            msg = f"{msg}; see GET /v1/voice/voices for the voice ids"
        elif "position" in p:
            code = "invalid_ssml"
            msg = f"{msg} (at character {p['position']})"
        elif msg.startswith("unknown field"):
            code = "unknown_field"
        else:
            code = "invalid_field"
        out.append(_err(code, field, msg))
    return out


def _is_bot_stream(stream: Any) -> bool:
    return isinstance(stream, dict) and stream.get("bidirectional") is True


def _ws_url_error(field: str, url: str) -> dict[str, Any] | None:
    from services.common.ssrf import SsrfError, check_ws_url

    try:
        check_ws_url(url)
    except SsrfError as exc:
        return _err("invalid_url", field, str(exc))
    return None


def _url_error(field: str, url: str | None) -> dict[str, Any] | None:
    if url is None:
        return None
    from services.common.ssrf import SsrfError, check_url

    try:
        check_url(url)
    except SsrfError as exc:
        return _err("invalid_url", field, str(exc))
    return None


def _amd_errors(data: dict[str, Any], model: PlaceCallData) -> list[dict[str, Any]]:
    """The machine detection options mean nothing without `machine_detection`: refused, not ignored."""
    if model.machine_detection is not None:
        return []
    return [_err("invalid_field", f, f"{f} needs machine_detection (enable or detect_message_end)")
            for f in ("machine_detection_timeout", "async_amd", "amd_webhook_url")
            if data.get(f) not in (None, False)]


async def check_place_call(data: Any, account_id: str, lookup: Any) -> tuple[PlaceCallData | None, list[dict]]:
    """Validate a PlaceCall payload for ``account_id``: (model, []) or (None, errors)."""
    if not isinstance(data, dict):
        return None, [_err("invalid_request", None, "the request body must be a JSON object")]
    if (where := nul_path(data)) is not None:  # the Kafka intake: the HTTP edge refused it already
        return None, [_err("invalid_character", where or None, "strings must not contain NUL (U+0000)")]

    errors: list[dict[str, Any]] = []
    present = [k for k in _SOURCES if data.get(k) is not None]
    if not present and not _is_bot_stream(data.get("stream")):  # a voice bot's call needs no prompt
        errors.append(_err("missing_field", "tts", "either tts or audio_url is required"))
    elif data.get("tts") is not None and data.get("audio_url") is not None:
        errors.append(_err("conflicting_fields", "audio_url", "give tts or audio_url, not both"))
    elif data.get("dial") is not None and (data.get("flow") is not None or data.get("flow_id") is not None):
        errors.append(_err("conflicting_fields", "dial", "give dial or a flow, not both (a flow has a dial step)"))

    model, errors = _model_errors(PlaceCallData, data, errors)
    if errors or model is None:
        return None, errors or [_err("invalid_request", None, "invalid PlaceCall")]

    errors.extend(_amd_errors(data, model))
    for field, url in (("audio_url", model.audio_url), ("webhook_url", model.webhook_url),
                       ("transcribe_webhook_url", model.transcribe_webhook_url),
                       ("amd_webhook_url", model.amd_webhook_url),
                       ("gather.webhook_url", model.gather.webhook_url if model.gather else None)):
        e = _url_error(field, url)
        if e:
            errors.append(e)
    if model.stream is not None and (e := _ws_url_error("stream.url", model.stream.url)):
        errors.append(e)

    if model.flow is not None:
        errors.extend(_flow_errors(model.flow))
    if model.dial is not None:
        errors.extend(_dial_errors(model.dial.model_dump(exclude_none=True)))

    from services.lib.languages import language_problem

    for field, tag in (("transcribe_language", model.transcribe_language),
                       ("gather.language", model.gather.language if model.gather else None)):
        if problem := language_problem(tag):
            errors.append(_err("invalid_field", field, problem))
    if model.transcribe_language and not model.transcribe:
        errors.append(_err("invalid_field", "transcribe_language", "transcribe_language needs transcribe: true"))
    if (model.transcribe_webhook_url or model.transcribe_webhooks) and not model.transcribe:
        field = "transcribe_webhook_url" if model.transcribe_webhook_url else "transcribe_webhooks"
        errors.append(_err("invalid_field", field, "live transcript webhooks need transcribe: true"))
    if model.transcribe_webhooks and not model.webhook_url and not model.transcribe_webhook_url:
        errors.append(_err("missing_field", "webhook_url", "transcribe_webhooks sends to webhook_url: give one"))

    g = model.gather
    if g is not None:
        if g.type == "speech" and g.num_digits is not None:
            errors.append(_err("invalid_field", "gather.num_digits", "num_digits needs a dtmf gather"))
        if g.type == "speech" and "finish_on_key" in (data.get("gather") or {}) and g.finish_on_key:
            errors.append(_err("invalid_field", "gather.finish_on_key", "finish_on_key needs a dtmf gather"))

    if not errors and not await call_lookup(lookup, account_id, model.from_):
        errors.append(_err("number_not_verified", "from",
                           f"{model.from_} is not a verified number of this account (see /v1/voice/numbers)"))
    shown = model.dial.caller_id if model.dial is not None else None
    if not errors and shown is not None and not await call_lookup(lookup, account_id, shown):
        errors.append(_err("number_not_verified", "dial.caller_id",
                           f"{shown} is not a verified number of this account (see /v1/voice/numbers)"))
    return (None, errors) if errors else (model, [])


def _dial_errors(options: dict[str, Any]) -> list[dict[str, Any]]:
    """The `dial` option is checked as the dial step it runs (services/lib/flows/call_options.py)."""
    from services.lib.flows.call_options import dial_step
    from services.lib.flows.validate import validate_steps

    out = []
    for fe in validate_steps([dial_step(options)], set()):
        inside = fe.path.split(".", 2)[2:]  # steps.0.to -> to
        out.append(_err("invalid_field", "dial." + inside[0] if inside else "dial",
                        fe.message.replace("dial step: ", "", 1)))
    return out


def _flow_errors(flow: Any) -> list[dict[str, Any]]:
    """A broken menu never reaches a caller: the same checks as saving a flow."""
    from services.lib.flows.validate import validate_flow

    return [{"code": fe.code, "field": "flow." + fe.field, "message": fe.message} for fe in validate_flow(dict(flow))]


def status_events(names: list[str] | None) -> frozenset[str] | None:
    """The public statuses a call's `status_callback_events` selects (None: all of them)."""
    if names is None:
        return None
    return frozenset("in-progress" if n == "answered" else n for n in names)


# What may go together in one update: a redirect and a play both replace what the caller
# hears next, and a hangup leaves nothing to change.
_EXCLUSIVE = (("tts", "audio_url"), ("flow", "flow_id"), ("flow", "tts"), ("flow", "audio_url"),
              ("flow_id", "tts"), ("flow_id", "audio_url"))


def check_update_call(data: Any) -> tuple[UpdateCallData | None, list[dict]]:
    """Validate an UpdateCall payload (the body of POST /v1/voice/calls/{id}): (model, []) or
    (None, errors). The call's own state (live, answered, recording) is the orchestrator's to
    judge; a stored flow's existence and steps are checked where the flows are (API, orchestrator)."""
    if not isinstance(data, dict):
        return None, [_err("invalid_request", None, "the request body must be a JSON object")]
    if (where := nul_path(data)) is not None:
        return None, [_err("invalid_character", where or None, "strings must not contain NUL (U+0000)")]
    errors: list[dict[str, Any]] = []
    given = [k for k in UPDATE_CHANGES if data.get(k) is not None]
    for a, b in _EXCLUSIVE:
        if a in given and b in given:
            errors.append(_err("conflicting_fields", b, f"give {a} or {b}, not both"))
            break
    if "status" in given and len(given) > 1:
        errors.append(_err("conflicting_fields", "status", "status: completed hangs up; it takes no other change"))
    if data.get("step") is not None and not ({"flow", "flow_id"} & set(given)):
        errors.append(_err("invalid_field", "step", "step needs flow or flow_id"))
    if "interrupt" in data and not ({"tts", "audio_url"} & set(given)):
        errors.append(_err("invalid_field", "interrupt", "interrupt needs tts or audio_url"))
    model, errors = _model_errors(UpdateCallData, data, errors)
    errors = [e for e in errors if e["field"] is not None]  # the model's "at least one change", below
    if not given:  # after the others: an unknown field is the more precise answer to {"tsst": ...}
        errors.append(_err("empty_update", None, "an update needs at least one change: flow, flow_id, tts, "
                                                 "audio_url, send_digits, recording or status"))
    if errors or model is None:
        return None, errors or [_err("invalid_request", None, "invalid UpdateCall")]
    e = _url_error("audio_url", model.audio_url)
    if e:
        errors.append(e)
    if model.flow is not None:
        errors.extend(_flow_errors(model.flow))
        if not errors and model.step is not None and model.step not in (model.flow.get("steps") or {}):
            errors.append(_err("invalid_step", "step", f"the flow has no step {model.step!r}"))
    return (None, errors) if errors else (model, [])
