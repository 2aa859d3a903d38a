"""/v1/voice/voices: the TTS voice catalog."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from services.api import models
from services.api.auth import current_account
from services.api.errors import json_response
from services.common.accounts import Account

router = APIRouter(tags=["voices"])

# The documented voices, used only if the TTS service is not installed.
_DOC_VOICES = [
    {"id": "en-US-Neural2-F", "language": "en-US", "language_name": "English (US)", "gender": "female",
     "type": "neural", "engine": "", "note": ""},
    {"id": "en-US-Neural2-D", "language": "en-US", "language_name": "English (US)", "gender": "male",
     "type": "neural", "engine": "", "note": ""},
    {"id": "en-GB-Neural2-A", "language": "en-GB", "language_name": "English (UK)", "gender": "female",
     "type": "neural", "engine": "", "note": ""},
    {"id": "es-ES-Neural2-A", "language": "es-ES", "language_name": "Spanish (Spain)", "gender": "female",
     "type": "neural", "engine": "", "note": ""},
    {"id": "fr-FR-Neural2-A", "language": "fr-FR", "language_name": "French", "gender": "female",
     "type": "neural", "engine": "", "note": ""},
]


def catalog() -> list[dict]:
    try:
        from services.tts.voices import VOICES
    except ImportError:
        return list(_DOC_VOICES)
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
