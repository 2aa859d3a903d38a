"""What `make run` starts, and what it tells the newcomer."""

from __future__ import annotations

from services.ops.supervisor import Service

SERVICES = [
    Service("projector", "services.projector.service"),
]


def services_and_banner() -> tuple[list[Service], str]:
    banner = "\n".join([
        "",
        "Canary Voice is running (Ctrl-C stops it).",
        "  Kafka:    127.0.0.1:9092  (topics voice.call.commands, voice.call.events, voice.media.audio, voice.dlq)",
        "  Postgres: postgresql://canary:canary@127.0.0.1:5432/canary",
        "",
    ])
    return SERVICES, banner
