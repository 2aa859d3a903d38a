"""/v1/voice/voices: the TTS voice catalog."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from services.api import models
from services.api.auth import current_account
from services.api.errors import json_response
from services.common.accounts import Account
from services.lib.voices.catalog import VOICES

router = APIRouter(tags=["voices"])


def catalog() -> list[dict]:
    return [v.to_dict() for v in VOICES.values()]


@router.get("/v1/voice/voices", response_model=None, summary="Available TTS voices",
            responses={200: {"model": models.VoiceList}, **models.errors(401, 422)})
async def list_voices(account: Annotated[Account, Depends(current_account)],
                      language: Annotated[str | None, Query(max_length=20,
                                                            description="BCP-47 prefix, e.g. en or en-US")] = None
                      ) -> Response:
    voices = catalog()
    if language:
        want = language.lower()
        voices = [v for v in voices if v["language"].lower() == want
                  or v["language"].lower().startswith(want + "-")]
    return json_response({"data": voices})
