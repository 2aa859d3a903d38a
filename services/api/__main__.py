"""`python -m services.api`: serve the API with uvicorn on CANARY_API_HOST:CANARY_API_PORT.

With CANARY_API_WORKERS > 1 uvicorn spawns fresh worker processes that never run
`main`; they build the app through `create_app` below, which configures logging first,
so every process logs the same way (JSON, redacted, tracebacks without locals).
"""

from __future__ import annotations

import sys

import uvicorn

from services.common.config import settings
from services.common.logging import configure, uvicorn_log_config
from services.common.signing import InsecureSecretError, check_service_secrets


def create_app():
    """The app factory uvicorn calls in each (worker) process."""
    configure("api")
    refuse_default_secrets()
    from services.api.app import create_app as build

    return build()


def refuse_default_secrets() -> None:
    """Exit (status 2) with the reason when a service-wide secret is unfit for production
    (the development default, empty, too short), unless CANARY_ENV=development."""
    try:
        check_service_secrets()
    except InsecureSecretError as exc:
        sys.stderr.write(f"canary api: refusing to start: {exc}\n")
        raise SystemExit(2) from None


def main() -> None:
    configure("api")
    refuse_default_secrets()
    s = settings()
    uvicorn.run("services.api.__main__:create_app", factory=True, host=s.api.host, port=s.api.port,
                workers=s.api.workers, access_log=False,
                log_config=uvicorn_log_config(),
                log_level=s.api.log_level, server_header=False,
                backlog=2048)


if __name__ == "__main__":
    main()
