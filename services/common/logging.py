"""One structlog configuration for every service: JSON lines on stderr.

Bind call_id / account_id with `structlog.contextvars.bind_contextvars` (or
`log.bind`) and every line written while handling that call carries them.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

_SECRET_KEYS = {"password", "api_key", "authorization", "secret", "token", "signing_secret"}


def _redact(_, __, event_dict):
    # Secrets must never reach a log line, whoever passed them in.
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "***"
    return event_dict


def configure(service: str, level: str | None = None) -> structlog.stdlib.BoundLogger:
    """Configure logging once per process and return the service's logger."""
    level_name = (level or os.environ.get("CANARY_LOG_LEVEL", "info")).upper()
    pretty = os.environ.get("CANARY_LOG_FORMAT") == "console"
    # Under the supervisor stderr is a pipe; it tells us whether its own output is a terminal.
    colors = os.environ.get("CANARY_LOG_COLORS", "1" if sys.stderr.isatty() else "0") == "1"
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=colors) if pretty else structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level_name, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return structlog.get_logger(service=service)


def get_logger(**bind) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(**bind)
