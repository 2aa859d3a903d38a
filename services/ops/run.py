"""What `make run` starts, and what it tells the newcomer."""

from __future__ import annotations

import asyncio
import importlib.util

from services.common.config import settings
from services.ops.supervisor import Service

ALL_SERVICES = [
    Service("api", "services.api"),
    Service("orchestrator", "services.orchestrator.service"),
    Service("telephony", "services.telephony.gateway"),
    Service("tts", "services.tts.worker"),
    Service("recording", "services.recording.worker"),
    Service("transcription", "services.transcription.worker"),
    Service("live-stt", "services.transcription.live"),
    Service("speech-gather", "services.transcription.speech_gather"),
    Service("webhooks", "services.webhooks"),
    Service("projector", "services.projector.service"),
]
DEV_ACCOUNT = "dev"
DEV_NUMBER = "+15559876543"


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


async def dev_setup() -> str:
    """The dev account with its verified caller ID, and a fresh test key (printed once)."""
    from services.common import accounts, db

    conn = await db.connect()
    try:
        acct = await accounts.ensure_account(conn, DEV_ACCOUNT)
        await accounts.ensure_number(conn, acct["id"], DEV_NUMBER)
        _, key = await accounts.create_key(conn, acct["id"], "test")
        return key
    finally:
        await conn.close()


def services_and_banner() -> tuple[list[Service], str]:
    s = settings()
    key = asyncio.run(dev_setup())
    url = s.public_url
    banner = "\n".join([
        "",
        "Canary Voice is running (Ctrl-C stops everything).",
        f"  API:       {url}   (docs: {url}/docs, OpenAPI: {url}/openapi.json)",
        f"  console:   {url}/console/   (sign in with the dev key)",
        f"  dev key:   {key}   (account '{DEV_ACCOUNT}', sandbox carrier, caller ID {DEV_NUMBER} verified)",
        "  Kafka:     127.0.0.1:9092   Postgres: postgresql://canary:canary@127.0.0.1:5432/canary",
        "",
        "Try it:",
        f"  curl -X POST {url}/v1/voice/calls -H \"Authorization: Bearer {key}\" \\",
        "    -H \"Content-Type: application/json\" \\",
        "    -d '{\"to\":\"+15551234567\",\"from\":\"+15559876543\",\"tts\":{\"text\":\"Hello! This is a call from"
        " Canary. Press 1 to confirm.\",\"voice\":\"en-US-Neural2-F\"}}'",
        f"  curl {url}/v1/voice/calls/CALL_ID -H \"Authorization: Bearer {key}\"",
        "  kcat -C -b 127.0.0.1:9092 -t voice.call.events -f '%k %s\\n'     # every event, live",
        "",
    ])
    return [svc for svc in ALL_SERVICES if _present(svc.module)], banner
