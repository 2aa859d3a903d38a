"""Settings from the environment, with the embedded defaults `make run` uses."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = field(default_factory=lambda: _env("CANARY_KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    database_url: str = field(default_factory=lambda: _env(
        # No TLS on loopback: Debian's cluster offers it and asyncpg would take it, for nothing.
        "CANARY_DATABASE_URL", "postgresql://canary:canary@127.0.0.1:5432/canary?sslmode=disable"))
    partitions: int = field(default_factory=lambda: int(_env("CANARY_PARTITIONS", "6")))
    api_host: str = field(default_factory=lambda: _env("CANARY_API_HOST", "127.0.0.1"))
    api_port: int = field(default_factory=lambda: int(_env("CANARY_API_PORT", "8080")))
    public_url: str = field(default_factory=lambda: _env("CANARY_PUBLIC_URL", "http://127.0.0.1:8080"))
    local_dir: Path = field(default_factory=lambda: Path(_env("CANARY_LOCAL_DIR", ".local")).resolve())
    log_level: str = field(default_factory=lambda: _env("CANARY_LOG_LEVEL", "info"))
    # Secret for signed recording URLs; a dev default is fine for the embedded stack.
    url_signing_secret: str = field(default_factory=lambda: _env("CANARY_URL_SECRET", "dev-only-change-me"), repr=False)
    calls_per_second: float = field(default_factory=lambda: float(_env("CANARY_CPS", "10")))
    sandbox_speed: float = field(default_factory=lambda: float(_env("CANARY_SANDBOX_SPEED", "1")))


def settings() -> Settings:
    """Current settings (read each time so tests can change the environment)."""
    return Settings()


def projection_schema() -> str:
    """Where the projections live (CANARY_PROJECTION_SCHEMA, default `projection`)."""
    import re

    name = os.environ.get("CANARY_PROJECTION_SCHEMA", "projection")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", name):
        raise ValueError(f"CANARY_PROJECTION_SCHEMA {name!r} is not a plain schema name")
    return name
