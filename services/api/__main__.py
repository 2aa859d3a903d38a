"""`python -m services.api`: serve the API with uvicorn on CANARY_API_HOST:CANARY_API_PORT.

With CANARY_API_WORKERS > 1 uvicorn spawns fresh worker processes that never run
`main`; they build the app through `create_app` below, which configures logging first,
so every process logs the same way (JSON, redacted, tracebacks without locals).
"""

from __future__ import annotations

import uvicorn

from services.common.config import settings
from services.common.logging import configure, uvicorn_log_config


def create_app():
    """The app factory uvicorn calls in each (worker) process."""
    configure("api")
    from services.api.app import create_app as build

    return build()


def main() -> None:
    configure("api")
    s = settings()
    uvicorn.run("services.api.__main__:create_app", factory=True, host=s.api.host, port=s.api.port,
                workers=s.api.workers, access_log=False,
                log_config=uvicorn_log_config(),
                log_level=s.api.log_level, server_header=False,
                backlog=2048)


if __name__ == "__main__":
    main()
