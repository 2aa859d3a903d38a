"""/v1/voice/trunk: the account's SIP trunk (where its live calls go).

    GET    /v1/voice/trunk                     the trunk (password: has_password only)
    PUT    /v1/voice/trunk                     create or replace it (password write-only; absent = keep,
                                               unless the host changes: then it must be given again)
    DELETE /v1/voice/trunk

Only live keys (``sk_live_``) may change or remove the trunk: it is where live calls go,
and a sandbox key must not be able to redirect them (403 ``live_key_required``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from services.api import models
from services.api.auth import current_account
from services.api.body import read_object
from services.api.errors import ApiError, json_response
from services.common.accounts import Account, iso
from services.lib import trunks as repo
from services.lib.trunks import TrunkError

router = APIRouter(tags=["telephony"])

TRUNK_FIELDS = {"host", "port", "transport", "username", "password", "caller_id", "allowed_from_prefixes",
                "digest_realm", "allow_legacy_digest", "allow_foreign_hops", "srtp"}

_TRUNK_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["host"], "additionalProperties": False, "properties": {
        "host": {"type": "string", "description": "trunk hostname or IP address"},
        "port": {"type": ["integer", "null"], "minimum": 1, "maximum": 65535, "default": None,
                 "description": "absent or null: located by DNS at each call (RFC 3263: NAPTR, SRV, then"
                                " the host's address with 5060, 5061 for tls); an IP address host: 5060/5061"},
        "transport": {"type": "string", "enum": list(repo.TRANSPORTS), "default": "udp"},
        "username": {"type": ["string", "null"], "description": "digest auth user name"},
        "password": {"type": ["string", "null"], "writeOnly": True,
                     "description": "digest password; write-only. Absent: keep the stored one (refused with"
                                    " 422 password_required when the host changes); null: remove"},
        "caller_id": {"type": ["string", "null"],
                      "description": "fixed caller id (E.164); the fallback when allowed_from_prefixes is set"},
        "allowed_from_prefixes": {"type": "array", "items": {"type": "string", "pattern": r"^\+[0-9]{0,15}$"},
                                  "description": "when set, `from` must start with one of these"},
        "digest_realm": {"type": ["string", "null"], "description": "the only digest realm whose challenges"
                         " are answered; null: the first realm the trunk's own address challenges a call with"},
        "allow_legacy_digest": {"type": "boolean", "default": False,
                                "description": "answer digest challenges without qop (RFC 2069); off: refused"},
        "allow_foreign_hops": {"type": "boolean", "default": False,
                               "description": "follow a Record-Route or Contact off the trunk's addresses;"
                                              " off: such a call fails rather than send there"},
        "srtp": {"type": "string", "enum": list(repo.SRTP_MODES), "default": "off",
                 "description": "SRTP with SDES keys (RFC 4568): off; optional (offer plain RTP, answer an SRTP"
                                " offer with SRTP); required (offer only RTP/SAVP, refuse plain RTP). Needs"
                                " transport tls (422 srtp_requires_tls): the keys travel in the SIP"}}},
    "example": {"host": "sip.example.net", "port": 5060, "username": "acme", "password": "s3cret",
                "caller_id": "+15559876543"}}}}}


def _require_live(account: Account) -> None:
    if account.mode != "live":
        raise ApiError(403, "live_key_required", "only a live key (sk_live_...) may change the SIP trunk:"
                       " it is where the account's live calls go")


def _trunk(t: dict[str, Any]) -> dict[str, Any]:
    return {"object": "sip_trunk", "host": t["host"], "port": t["port"], "transport": t["transport"],
            "username": t["username"], "has_password": t["has_password"], "caller_id": t["caller_id"],
            "allowed_from_prefixes": t["allowed_from_prefixes"], "digest_realm": t["digest_realm"],
            "allow_legacy_digest": t["allow_legacy_digest"], "allow_foreign_hops": t["allow_foreign_hops"],
            "srtp": t["srtp"], "created_at": iso(t["created_at"]),
            "updated_at": iso(t["updated_at"])}


@router.get("/v1/voice/trunk", response_model=None, summary="The account's SIP trunk",
            responses={200: {"description": "the trunk (the password is never returned: has_password)"},
                       **models.errors(401, 404, 503)})
async def get_trunk(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    t = await repo.get_trunk(await request.app.state.runtime.db(), account.id)
    if t is None:
        raise ApiError(404, "trunk_not_found", "this account has no SIP trunk")
    return json_response(_trunk(t))


@router.put("/v1/voice/trunk", response_model=None, openapi_extra=_TRUNK_BODY,
            summary="Create or replace the account's SIP trunk",
            responses={200: {"description": "the trunk"}, **models.errors(400, 401, 403, 413, 415, 422, 503)})
async def put_trunk(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    _require_live(account)
    b = await read_object(request, 16 * 1024, TRUNK_FIELDS)
    if b.get("host") is None:
        raise ApiError(422, "missing_field", "host is required", "host")
    try:
        t = await repo.set_trunk(
            await request.app.state.runtime.db(), account.id, host=b["host"], port=b.get("port"),
            transport=b.get("transport", "udp"), username=b.get("username"),
            password=b["password"] if "password" in b else repo.KEEP, caller_id=b.get("caller_id"),
            allowed_from_prefixes=b.get("allowed_from_prefixes"), digest_realm=b.get("digest_realm"),
            allow_legacy_digest=b.get("allow_legacy_digest", False),
            allow_foreign_hops=b.get("allow_foreign_hops", False), srtp=b.get("srtp", "off"))
    except TrunkError as exc:
        raise ApiError(422, exc.code, exc.message, exc.field) from None
    return json_response(_trunk(t))


@router.delete("/v1/voice/trunk", status_code=204, response_model=None, summary="Remove the account's SIP trunk",
               responses={204: {"description": "removed"}, **models.errors(401, 403, 404, 503)})
async def delete_trunk(request: Request, account: Annotated[Account, Depends(current_account)]) -> Response:
    _require_live(account)
    if not await repo.delete_trunk(await request.app.state.runtime.db(), account.id):
        raise ApiError(404, "trunk_not_found", "this account has no SIP trunk")
    return Response(status_code=204)
