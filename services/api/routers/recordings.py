"""/v1/voice/recordings/{id}/media: recording bytes behind a signed, expiring URL."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from services.api import models, signing, store
from services.api.auth import client_address
from services.api.errors import ApiError
from services.api.runtime import too_many

router = APIRouter(tags=["recordings"])

_MEDIA_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}


def download_budget(request: Request) -> None:
    """Links need no API key: downloads are limited per client address, before the query
    parameters are validated (a dependency runs first)."""
    limiter = request.app.state.runtime.media_downloads
    wait = limiter.take(client_address(request))
    if wait > 0:
        raise too_many(f"recording downloads are limited to {limiter.rate:g}/s per client address", wait)


@router.get("/v1/voice/recordings/{rec_id}/media", response_model=None, dependencies=[Depends(download_budget)],
            summary="Download a recording (the signed `url` of GET /v1/voice/calls/{id}/recording)",
            responses={200: {"content": {"audio/wav": {}, "audio/mpeg": {}}, "description": "audio"},
                       **models.errors(403, 404, 422, 429, 503)})
async def recording_media(rec_id: str, request: Request,
                          expires: Annotated[int, Query(ge=0, le=2**53)],
                          signature: Annotated[str, Query(max_length=128)],
                          format: Annotated[Literal["wav", "mp3"], Query()] = "mp3") -> Response:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", rec_id) or not signing.verify(rec_id, format, expires, signature):
        raise ApiError(403, "invalid_signature", "the link is invalid or has expired", "signature")
    pool = await request.app.state.runtime.db()
    row = await pool.fetchrow(store.GET_MEDIA, rec_id)
    ref = (row["mp3_ref"] if format == "mp3" else row["wav_ref"]) if row else None
    if not ref:
        raise ApiError(404, "recording_not_found", f"no {format} for recording {rec_id}", "format")
    from services.common.media_store import MediaNotFound, get_media_store

    try:
        data = await asyncio.to_thread(get_media_store().get, ref)
    except (MediaNotFound, ValueError):
        raise ApiError(404, "recording_not_found", "the recording's audio is gone", None) from None
    return Response(data, media_type=_MEDIA_TYPES[format],
                    headers={"Content-Disposition": f'attachment; filename="{rec_id}.{format}"',
                             "Cache-Control": "private, max-age=300"})
