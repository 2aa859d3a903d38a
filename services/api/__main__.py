"""`python -m services.api`: serve the API with uvicorn on CANARY_API_HOST:CANARY_API_PORT."""

from __future__ import annotations

import os

import uvicorn

from services.common.config import settings
from services.common.logging import configure


def main() -> None:
    configure("api")
    s = settings()
    uvicorn.run("services.api.app:create_app", factory=True, host=s.api_host, port=s.api_port,
                workers=int(os.environ.get("CANARY_API_WORKERS", "1")), access_log=False,
                log_level=os.environ.get("CANARY_API_LOG_LEVEL", "warning"), server_header=False,
                backlog=2048)


if __name__ == "__main__":
    main()
