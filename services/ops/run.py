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


class ReplicasError(ValueError):
    """A --replicas value that cannot be used; the message names the offending part."""


def parse_replicas(spec: str, known: list[str] | None = None) -> dict[str, int]:
    """`api=2,orchestrator=2` -> {"api": 2, "orchestrator": 2}; a service not named runs once.

    Every part must be `SERVICE=N` with a known service and a whole N >= 1."""
    names = [svc.name for svc in ALL_SERVICES] if known is None else known
    out: dict[str, int] = {}
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            continue
        name, sep, count = (x.strip() for x in part.partition("="))
        if not sep or not name:
            raise ReplicasError(f"--replicas: {part!r} is not SERVICE=N (e.g. api=2)")
        if name not in names:
            raise ReplicasError(f"--replicas: unknown service {name!r} in {part!r} (services: {', '.join(names)})")
        if not count.isdigit():
            raise ReplicasError(f"--replicas: {part!r}: the count {count!r} is not a whole number")
        if int(count) < 1:
            raise ReplicasError(f"--replicas: {part!r}: the count must be at least 1")
        if name in out:
            raise ReplicasError(f"--replicas: {name!r} is given twice")
        out[name] = int(count)
    return out


def expand(services: list[Service], replicas: dict[str, int], api_port: int) -> list[Service]:
    """N instances of each service. Instances of a service share its consumer group (Kafka
    spreads the partitions over them); API instance k (from 1) listens on api_port + k - 1
    (distinct ports, no SO_REUSEPORT: each instance stays addressable, e.g. by a load
    balancer or a health probe)."""
    out: list[Service] = []
    for svc in services:
        n = replicas.get(svc.name, 1)
        for k in range(1, n + 1):
            name = svc.name if n == 1 else f"{svc.name}#{k}"
            env = (("CANARY_API_PORT", str(api_port + k - 1)),) if svc.name == "api" and k > 1 else ()
            out.append(Service(name, svc.module, svc.env + env))
    return out


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


def services_and_banner(replicas: dict[str, int] | None = None) -> tuple[list[Service], str]:
    s = settings()
    replicas = replicas or {}
    n_api = replicas.get("api", 1)
    extra_api = ("" if n_api == 1 else
                 f"  API instances: ports {s.api.port}-{s.api.port + n_api - 1} (put a load balancer in front)")
    key = asyncio.run(dev_setup())
    url = s.public_url
    banner = "\n".join([
        "",
        "Canary Voice is running (Ctrl-C stops everything).",
        f"  API:       {url}   (docs: {url}/docs, OpenAPI: {url}/openapi.json)",
        *([extra_api] if extra_api else []),
        f"  console:   {url}/console/   (sign in with the dev key)",
        f"  dev key:   {key}   (account '{DEV_ACCOUNT}', sandbox carrier, caller ID {DEV_NUMBER} verified)",
        f"  Kafka:     {s.kafka_bootstrap}   Postgres: postgresql://canary:canary@127.0.0.1:5432/canary",
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
    return expand([svc for svc in ALL_SERVICES if _present(svc.module)], replicas, s.api.port), banner
