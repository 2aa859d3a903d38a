"""/v1/voice/calls: create (PlaceCall command), get, list, update (UpdateCall), hang up, events, recording."""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import datetime, timezone
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.responses import Response

from events import derive_id, new_envelope, topics
from events.catalog import FINAL_STATUSES
from events.envelope import utc_now
from events.public import public_data
from services.api import models, store
from services.api.routers import streams
from services.api.auth import authenticate_request, current_account
from services.api.body import read_json
from services.api.errors import ApiError, json_response
from services.common.accounts import Account, iso, new_id
from services.lib.intake import check_place_call, check_update_call

router = APIRouter(tags=["calls"])

CALL_ID_RE = re.compile(r"^call_[0-9A-Za-z]{1,40}$")
IDEM_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
HANGUP_KEY = "hangup "  # + call id: the space keeps it out of the Idempotency-Key space (IDEM_RE)
UPDATE_KEY = "update "  # + the client's Idempotency-Key: a key of an update never replays a create
_SERVER_FIELDS = ("carrier", "created_at")
_IDEM_PARAM = {"name": "Idempotency-Key", "in": "header", "required": False,
               "description": "retries with the same key return the same call and place only one; "
                              "the same key with a different body is a 409",
               "schema": {"type": "string", "minLength": 1, "maxLength": 255}}
_CALL_BODY = {"security": [{"HTTPBearer": []}], "parameters": [_IDEM_PARAM], "requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/CallCreate"},
                         "example": {"to": "+15551234567", "from": "+15559876543",
                                     "tts": {"text": "Hello! This is a call from Canary. Press 1 to confirm.",
                                             "voice": "en-US-Neural2-F"}}}}}}


def commands_topic() -> str:
    return topics.commands()  # read per call: tests vary the prefix


def created_response(call_id: str, data: dict[str, Any], created_at: str) -> dict[str, Any]:
    return {"id": call_id, "to": data["to"], "from": data["from"], "status": "queued",
            "direction": "outbound", "created_at": created_at}


def _idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key, or None; a 400 if it is not 1-255 printable ASCII characters."""
    key = request.headers.get("idempotency-key")
    if key is not None and not IDEM_RE.match(key):
        raise ApiError(400, "invalid_idempotency_key", "Idempotency-Key: 1-255 printable ASCII characters",
                       "Idempotency-Key")
    return key


def _not_found(call_id: str) -> ApiError:
    return ApiError(404, "call_not_found", f"no call {call_id}", "id")


@router.post("/v1/voice/calls", status_code=201, response_model=None, openapi_extra=_CALL_BODY,
             summary="Place an outbound call",
             responses={201: {"model": models.CallCreated, "description": "accepted: the PlaceCall command is "
                              "durably in Kafka; the call is placed asynchronously"},
                        **models.errors(400, 401, 403, 409, 413, 415, 422, 429, 503)})
async def create_call(request: Request) -> Response:
    # Auth is called directly rather than through Depends: this is the hot path. It also
    # takes the call-creation token, before the body is read or validated.
    account = await authenticate_request(request)
    rt = request.app.state.runtime
    body = await read_json(request, rt.max_body)
    idempotency_key = _idempotency_key(request)
    if isinstance(body, dict):
        for k in _SERVER_FIELDS:
            if k in body:
                raise ApiError(422, "unknown_field", f"{k} is set by the server", k)
    data = {**body, "carrier": account.carrier} if isinstance(body, dict) else body
    payload, errors = await check_place_call(data, account.id, rt.numbers.for_carrier(account.carrier))
    if errors:
        e = errors[0]
        status = 403 if e["code"] == "number_not_verified" else 422
        raise ApiError(status, e["code"], e["message"], e.get("field"))

    call_id = new_id("call")
    created_at = utc_now()
    command = payload.model_dump(by_alias=True, exclude_none=True, mode="json")
    command["created_at"] = created_at
    env = new_envelope("PlaceCall", call_id, account.id, command)
    created = datetime.fromisoformat(created_at)
    pool = await rt.db()
    topic = commands_topic()

    # Exact acceptance: the request row is written 'pending' before the PlaceCall is sent.
    # If the send fails, the row is marked 'abandoned' and the answer is 503, unless the
    # orchestrator accepted the call meanwhile (the send landed after all): then it is 201.
    # A PlaceCall that lands after its row was abandoned is refused by the orchestrator.
    if idempotency_key is None:
        await rt.live_calls.admit(account)
        written = False
        try:
            await rt.requests.insert(call_id, account.id, command["to"], command["from"], command, created)
            written = True
        finally:
            rt.live_calls.settled(account, written)
        await _publish_or_abandon(rt, pool, topic, env)
        return json_response(created_response(call_id, command, created_at), 201)

    # Idempotent: the key and the request row commit together before the send (a
    # connection is never held across it). A retry meanwhile waits for the first POST to
    # settle and answers the same; a retry after a 503 finds the key gone and starts afresh.
    body_hash = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
    got, admitted, written = None, False, False
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = on")
            got = await conn.fetchval(
                "INSERT INTO idempotency_keys (account_id, key, body_sha256, call_id) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (account_id, key) DO NOTHING RETURNING call_id",
                account.id, idempotency_key, body_hash, call_id)
            if got is not None:  # a new request (a replay is answered whatever the live calls)
                await rt.live_calls.admit(account)  # a 429 here rolls the key back
                admitted = True
                await conn.execute(store.INSERT_REQUEST, call_id, account.id, command["to"], command["from"],
                                   command, created)
        written = got is not None
    finally:
        if admitted:
            rt.live_calls.settled(account, written)
    if got is not None:
        try:
            await _publish_or_abandon(rt, pool, topic, env)
        except ApiError as exc:
            if exc.code != "outcome_unknown":  # abandoned: the key may be used again
                await pool.execute("DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2",
                                   account.id, idempotency_key)
            raise
        await pool.execute("UPDATE call_requests SET state = 'published' WHERE id = $1 AND state = 'pending'",
                           call_id)
        return json_response(created_response(call_id, command, created_at), 201)
    prior = await _settled_request(pool, account.id, idempotency_key, rt.send_timeout + 2.0)
    if prior is not None and prior["state"] == "pending":
        # Accepted or not is being decided (a send in flight, or the orchestrator yet to take it).
        raise ApiError(409, "idempotency_in_progress", "a request with this Idempotency-Key is still being "
                       "accepted; retry", "Idempotency-Key", headers={"Retry-After": "1"})
    if prior is None or prior["id"] is None or prior["state"] == "abandoned":
        raise ApiError(409, "idempotency_conflict", "a request with this Idempotency-Key is in an unknown "
                       "state; retry", "Idempotency-Key", headers={"Retry-After": "1"})
    if prior["body_sha256"] != body_hash:
        raise ApiError(409, "idempotency_key_reused", "this Idempotency-Key was used with a different body",
                       "Idempotency-Key")
    req = prior["request"]
    return json_response(created_response(prior["id"], req, req.get("created_at") or iso(prior["created_at"])),
                         201, headers={"Idempotent-Replayed": "true"})


async def _settled_request(pool: Any, account_id: str, key: str, wait_s: float) -> Any:
    """The request an Idempotency-Key names, once its first POST has settled (published,
    accepted or abandoned), or still pending after `wait_s`: a concurrent retry answers
    what the first one answered."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        prior = await pool.fetchrow(
            "SELECT k.body_sha256, r.id, r.request, r.created_at, r.state FROM idempotency_keys k"
            " LEFT JOIN call_requests r ON r.id = k.call_id WHERE k.account_id = $1 AND k.key = $2",
            account_id, key)
        if prior is None or prior["state"] != "pending" or asyncio.get_running_loop().time() > deadline:
            return prior
        await asyncio.sleep(0.05)


async def _publish_or_abandon(rt: Any, pool: Any, topic: str, env: Any) -> None:
    """Publish the PlaceCall; if that fails, abandon its request row and raise the 503, unless the
    orchestrator accepted it first (the send landed after all): then return, accepted."""
    try:
        await rt.publish(topic, env)
        return
    except ApiError as failed:
        try:
            state = await pool.fetchval(
                "WITH a AS (UPDATE call_requests SET state = 'abandoned' WHERE id = $1 AND state = 'pending'"
                " RETURNING state) SELECT COALESCE((SELECT state FROM a), (SELECT state FROM call_requests"
                " WHERE id = $1))", env.call_id)
        except Exception:
            raise ApiError(503, "outcome_unknown", f"neither Kafka nor the database answered: call {env.call_id} "
                           "may or may not be placed; GET it, or retry with the same Idempotency-Key",
                           headers={"Retry-After": "1"}) from None
        if state == "accepted":
            return
        raise failed


async def fetch_call(request: Request, account: Account, call_id: str) -> dict[str, Any]:
    if not CALL_ID_RE.match(call_id):
        raise _not_found(call_id[:64])
    pool = await request.app.state.runtime.db()
    row = await pool.fetchrow(store.GET_CALL, account.id, call_id)
    if row is None:
        raise _not_found(call_id)
    return store.call_from_row(row)


@router.get("/v1/voice/calls/{call_id}", response_model=None, summary="Get a call",
            responses={200: {"model": models.Call}, **models.errors(401, 404, 503)})
async def get_call(call_id: str, request: Request,
                   account: Annotated[Account, Depends(current_account)]) -> Response:
    return json_response(await fetch_call(request, account, call_id))


def _utc(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


def _number_filter(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    if not re.fullmatch(r"\+[1-9][0-9]{1,15}", value):
        raise ApiError(422, "invalid_parameter", f"{name} must be an E.164 number", name)
    return value


@router.get("/v1/voice/calls", response_model=None, summary="List calls (newest first)",
            responses={200: {"model": models.CallList}, **models.errors(401, 422, 503)})
async def list_calls(
    request: Request,
    account: Annotated[Account, Depends(current_account)],
    status: Annotated[models.Status | None, Query()] = None,
    to: Annotated[str | None, Query(max_length=20)] = None,
    from_: Annotated[str | None, Query(alias="from", max_length=20)] = None,
    created_after: Annotated[datetime | None, Query(description="inclusive, RFC 3339")] = None,
    created_before: Annotated[datetime | None, Query(description="exclusive, RFC 3339")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> Response:
    cur = None
    if cursor:
        cur = store.decode_cursor(cursor)
        if cur is None:
            raise ApiError(422, "invalid_cursor", "cursor is not one this API returned", "cursor")
    after, before = _utc(created_after), _utc(created_before)
    for name, dt in (("created_after", after), ("created_before", before)):
        if dt is not None and not (1970 <= dt.year <= 9000):
            raise ApiError(422, "invalid_parameter", f"{name} out of range", name)
    sql, args = store.list_query(status, _number_filter(to, "to"), _number_filter(from_, "from"),
                                 after, before, cur, limit)
    pool = await request.app.state.runtime.db()
    rows = await pool.fetch(sql, account.id, *args)
    has_more = len(rows) > limit
    rows = rows[:limit]
    data = [store.call_from_row(r) for r in rows]
    next_cursor = store.encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if has_more else None
    return json_response({"data": data, "has_more": has_more, "next_cursor": next_cursor})


@router.post("/v1/voice/calls/{call_id}/hangup", status_code=202, response_model=None,
             summary="Hang up a live call, or cancel a queued or ringing one",
             responses={202: {"model": models.Call, "description": "HangupCall command accepted (once per call:"
                              " a repeat answers the same without sending another, `Idempotent-Replayed: true`)"},
                        **models.errors(401, 404, 409, 429, 503)})
async def hangup_call(call_id: str, request: Request,
                      account: Annotated[Account, Depends(current_account)]) -> Response:
    call = await fetch_call(request, account, call_id)
    if call["status"] in FINAL_STATUSES:
        raise ApiError(409, "call_already_ended", f"the call is already {call['status']}", "status")
    # One HangupCall per call: the commands topic is kept forever, so a repeated hangup
    # answers as the first did without writing another. The first claims the call's
    # hangup row (a key no client can send: it has a space) and commits it only once Kafka
    # has acked, so a concurrent repeat waits on the row and a failed send can be retried.
    # The row expires with the idempotency keys (a day); by then the call has ended (409).
    env = new_envelope("HangupCall", call_id, account.id, {"reason": "api"})
    first = await _publish_once(request.app.state.runtime, account.id, HANGUP_KEY + call_id, "hangup", "", env)
    return json_response(call, 202, headers=None if first is True else {"Idempotent-Replayed": "true"})


async def _publish_once(rt: Any, account_id: str, key: str, body_hash: str, call_id: str, env: Any) -> Any:
    """Publish `env` once per (account, key): True when this request sent it, else what the
    first one stored (its body hash). The key row commits only once Kafka has acked, so a
    concurrent repeat waits on the row and a failed send (503) can be retried."""
    async with (await rt.db()).acquire() as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = on")
            first = await conn.fetchval(
                "INSERT INTO idempotency_keys (account_id, key, body_sha256, call_id) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (account_id, key) DO NOTHING RETURNING true", account_id, key, body_hash, call_id)
            if first:
                await rt.publish(commands_topic(), env)  # raises -> rolled back -> 503, retry
                return True
        return await conn.fetchrow("SELECT body_sha256, call_id FROM idempotency_keys"
                                   " WHERE account_id = $1 AND key = $2", account_id, key)


_UPDATE_BODY = {"security": [{"HTTPBearer": []}], "parameters": [
    {**_IDEM_PARAM, "description": "retries with the same key send the update once; the same key with a "
                                   "different body (or another call) is a 409"}],
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/CallUpdate"},
        "examples": {"play": {"value": {"tts": {"text": "Please hold."}, "interrupt": True}},
                     "redirect": {"value": {"flow_id": "flow_main_menu", "step": "menu"}},
                     "digits": {"value": {"send_digits": "1234#"}},
                     "pause_recording": {"value": {"recording": "pause"}},
                     "hold": {"value": {"hold": True}},
                     "hangup": {"value": {"status": "completed"}}}}}}}


@router.post("/v1/voice/calls/{call_id}", status_code=202, response_model=None, openapi_extra=_UPDATE_BODY,
             summary="Change a live call: redirect, play now, send digits, control the recording, hang up",
             responses={202: {"model": models.CallUpdateAccepted, "description": "UpdateCall command accepted; "
                              "the call.updated event in the timeline says what was applied"},
                        **models.errors(400, 401, 404, 409, 413, 415, 422, 429, 503)})
async def update_call(call_id: str, request: Request,
                      account: Annotated[Account, Depends(current_account)]) -> Response:
    rt = request.app.state.runtime
    body = await read_json(request, rt.max_body)
    idempotency_key = _idempotency_key(request)
    payload, errors = check_update_call(body)
    if errors:
        e = errors[0]
        raise ApiError(422, e["code"], e["message"], e.get("field"))
    call = await fetch_call(request, account, call_id)
    if call["status"] in FINAL_STATUSES:
        raise ApiError(409, "call_not_live", f"the call is already {call['status']}", "status")
    if payload.flow_id is not None:
        await _check_stored_flow(rt, account.id, payload.flow_id, payload.step)
    command = payload.model_dump(exclude_none=True, mode="json")
    if "interrupt" not in body:
        command.pop("interrupt", None)  # the default: kept out of the command and its hash
    body_hash = hashlib.sha256(orjson.dumps(command, option=orjson.OPT_SORT_KEYS)).hexdigest()
    if payload.status == "completed":
        # The hangup's path: one per call, whether asked by /hangup or by an update.
        env = new_envelope("UpdateCall", call_id, account.id, command)
        first = await _publish_once(rt, account.id, HANGUP_KEY + call_id, "hangup", "", env)
        return _update_accepted(call, env.id if first is True else None, payload, first is not True)
    if idempotency_key is None:
        env = new_envelope("UpdateCall", call_id, account.id, command)
        await rt.publish(commands_topic(), env)
        return _update_accepted(call, env.id, payload, False)
    # Idempotent: the command's id is derived from the key, so a replay answers the same id.
    env = new_envelope("UpdateCall", call_id, account.id, command,
                       id=derive_id(f"{account.id}/{idempotency_key}", "update"))
    first = await _publish_once(rt, account.id, UPDATE_KEY + idempotency_key, body_hash, call_id, env)
    if first is not True and (first is None or first["body_sha256"] != body_hash or first["call_id"] != call_id):
        raise ApiError(409, "idempotency_key_reused", "this Idempotency-Key was used with a different body or call",
                       "Idempotency-Key")
    return _update_accepted(call, env.id, payload, first is not True)


def _update_accepted(call: dict[str, Any], update_id: str | None, payload: Any, replayed: bool) -> Response:
    return json_response({**call, "update": {"id": update_id, "changes": payload.changes()}}, 202,
                         headers={"Idempotent-Replayed": "true"} if replayed else None)


async def _check_stored_flow(rt: Any, account_id: str, flow_id: str, step: str | None) -> None:
    """A redirect to a stored flow names one that exists (and a step it has): 422 otherwise.
    The orchestrator checks again when it decides (the flow may be deleted meanwhile)."""
    from services.lib.flows.store import load_definition

    pool = await rt.db()
    async with pool.acquire() as conn:
        found = await load_definition(conn, account_id, flow_id)
    if found is None:
        raise ApiError(422, "flow_not_found", f"no flow {flow_id!r} in this account", "flow_id")
    if step is not None and step not in (found[1].get("steps") or {}):
        raise ApiError(422, "invalid_step", f"the flow has no step {step!r}", "step")


@router.get("/v1/voice/calls/{call_id}/events", response_model=None, summary="The call's event timeline",
            description="With `follow=true`, a Server-Sent Events stream: the timeline (after `Last-Event-ID`),"
                        " then each event as it happens, then `end` (services/api/routers/streams.py).",
            responses={200: {"model": models.CallEventList, "content": {"text/event-stream": {}}},
                       **models.errors(401, 404, 429, 503)})
async def call_events(call_id: str, request: Request,
                      account: Annotated[Account, Depends(current_account)],
                      limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
                      follow: Annotated[bool, Query(description="stream (SSE) instead of a list")] = False,
                      last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None) -> Response:
    await fetch_call(request, account, call_id)
    if follow:
        return await streams.follow_call(request, account, call_id, last_event_id)
    pool = await request.app.state.runtime.db()
    rows = await pool.fetch(store.GET_EVENTS, call_id, account.id, limit)
    # The public view: no internal fields (cache_hit, media-store refs ...: events/public.py).
    data = [{"id": str(r["event_id"]), "type": r["type"], "version": r["version"],
             "occurred_at": iso(r["occurred_at"]), "trace_id": store.event_trace_id(r),
             "data": public_data(r["type"], r["data"])} for r in rows]
    return json_response({"call_id": call_id, "data": data})


@router.get("/v1/voice/calls/{call_id}/recording", response_model=None, summary="The call's recording",
            responses={200: {"model": models.Recording}, **models.errors(401, 404, 503)})
async def call_recording(call_id: str, request: Request,
                         account: Annotated[Account, Depends(current_account)]) -> Response:
    if not CALL_ID_RE.match(call_id):
        raise _not_found(call_id[:64])
    pool = await request.app.state.runtime.db()
    row = await pool.fetchrow(store.GET_RECORDING, call_id, account.id)
    if row is None:
        await fetch_call(request, account, call_id)  # 404 call_not_found if there is no such call
        raise ApiError(404, "recording_not_found", "the call has no recording (yet)", "recording")
    tr = None
    if row["tr_text"] is not None:
        tr = {"text": row["tr_text"], "confidence": round(float(row["tr_confidence"]), 4)}
    body = {"id": row["id"], "call_id": row["call_id"], "duration": round(row["duration_ms"] / 1000),
            "url": store.recording_url(row["id"], row["mp3_ref"]), "transcription": tr}
    if row["paused_spans"]:  # only for a recording that was paused: otherwise exactly the docs' shape
        body["paused_spans"] = row["paused_spans"]
    return json_response(body)

