"""One structlog configuration for every service: JSON lines on stderr.

Bind call_id / account_id with `structlog.contextvars.bind_contextvars` (or
`log.bind`) and every line written while handling that call carries them.

Every process calls `configure` (the API's uvicorn workers too: see
services/api/__main__.py), so every line, structlog's and the standard library's
(uvicorn, asyncio, aiokafka ...), goes through the same processors:

* tracebacks are rendered as plain text, never with frame locals (locals hold
  request scopes, headers, keys);
* `redact` masks secrets anywhere in the event, the message and the formatted
  traceback included: values under secret-looking keys (password, secret, token,
  authorization, api_key, cookie ...), API keys (`sk_live_...`, `sk_test_...`),
  webhook signing secrets (`whsec_...`), `Bearer`/`Basic` credentials, passwords
  in URLs and `password=`/`signature=`-style parameters.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

from services.common.config import settings

MASK = "***"

# Keys whose values are secrets wherever they appear (matched case-insensitively,
# as a substring, so `db_password`, `url_signing_secret`, `X-Api-Key` count too).
_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)|secret|authori[sz]ation|api[_-]?key|cookie|credential|private[_-]?key"
    r"|(^|[_-])token$|^signature$", re.I)

# Secrets inside free text: (pattern, replacement).
_SECRET_TEXT: list[tuple[re.Pattern[str], str]] = [
    # API keys and webhook signing secrets, whatever surrounds them.
    (re.compile(r"\b(sk_(?:live|test)_)[0-9A-Za-z]+"), r"\1" + MASK),
    (re.compile(r"\b(whsec_)[0-9A-Za-z_]+"), r"\1" + MASK),
    # An Authorization header's value in a repr or a dump: `authorization: x`,
    # `'authorization': 'x'`, `(b'authorization', b'Bearer x')`.
    (re.compile(r"""(authori[sz]ation['"]?\s*[:=,]\s*(?:b(?=['"]))?['"]?)(?!\*\*\*)(?:(?:bearer|basic)\s+)?[^\s'",)}\]]+""",
                re.I), r"\1" + MASK),
    # HTTP credentials anywhere else: `Bearer <token>`, `Basic <base64>`.
    (re.compile(r"\b(bearer|basic)(\s+)(?!\*\*\*)[A-Za-z0-9._~+/=:-]+", re.I), r"\1\2" + MASK),
    # Passwords in URLs: scheme://user:password@host.
    (re.compile(r"\b([a-z][a-z0-9+.-]*://[^\s:/@'\"]*:)[^\s@/'\"]+@", re.I), r"\1" + MASK + "@"),
    # `password=...` / `"secret": "..."` style parameters (query strings, DSNs, reprs).
    (re.compile(r"""\b((?:[a-z0-9_-]*(?:password|passwd|secret|api[_-]?key|token)|signature)['"]?\s*[=:]\s*(?:b(?=['"]))?['"]?)"""
                r"""(?!\*\*\*)[^\s&'",;)}\]]+""", re.I), r"\1" + MASK),
]

# structlog's/ProcessorFormatter's own bookkeeping entries: left alone.
_META_KEYS = frozenset({"_record", "_from_structlog", "_logger", "_name"})


def redact_text(text: str) -> str:
    """`text` with every secret it contains masked."""
    for pattern, repl in _SECRET_TEXT:
        text = pattern.sub(repl, text)
    return text


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of `value` (dicts, lists, strings ... nested) with the secrets masked.

    Objects of other types are replaced by their masked `repr`, which is what the
    renderers would have printed anyway.
    """
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if _depth > 20:
        return MASK
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and _SECRET_KEY.search(k) and v not in (None, "")
                    else redact(v, _depth + 1))
                for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [redact(v, _depth + 1) for v in value]
        # A (name, value) header pair: mask the value when the name is a secret's.
        if len(items) == 2 and isinstance(value, tuple) and isinstance(value[0], (str, bytes)):
            name = value[0].decode("latin-1") if isinstance(value[0], bytes) else value[0]
            if _SECRET_KEY.search(name):
                items[1] = MASK
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, (bytes, bytearray)):
        return redact_text(repr(bytes(value)))
    try:
        return redact_text(repr(value))
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def _redact(_, __, event_dict):
    # Secrets must never reach a log line, whoever passed them in. Runs after the
    # traceback was formatted, so the exception text is masked too.
    return {k: (v if k in _META_KEYS else redact({k: v})[k]) for k, v in event_dict.items()}


def _shared_processors() -> list:
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,  # plain traceback text: no frame locals
        _redact,
    ]


def _renderer(pretty: bool, colors: bool):
    if pretty:
        # Never structlog's default rich/better-exceptions tracebacks: they print locals.
        return structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback)
    return structlog.processors.JSONRenderer()


class _CanaryHandler(logging.StreamHandler):
    """The root handler `configure` installs (replaced, not duplicated, on a second call)."""


def _settings_from_env() -> tuple[bool, bool]:
    log = settings().log
    # Under the supervisor stderr is a pipe; it tells us whether its own output is a terminal.
    colors = sys.stderr.isatty() if log.colors is None else log.colors
    return log.format == "console", colors


def stdlib_handler() -> logging.Handler:
    """A handler rendering standard-library records like structlog's lines (redacted)."""
    handler = _CanaryHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *_shared_processors()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _renderer(*_settings_from_env())],
    ))
    return handler


def configure(service: str, level: str | None = None) -> structlog.stdlib.BoundLogger:
    """Configure logging once per process and return the service's logger."""
    level_name = (level or settings().log.level).upper()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *_shared_processors(),
                    _renderer(*_settings_from_env())],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level_name, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # The standard library's records (uvicorn's "Exception in ASGI application" among
    # them) go through the same processors.
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CanaryHandler)]:
        root.removeHandler(old)
    root.addHandler(stdlib_handler())
    root.setLevel(logging.WARNING)
    return structlog.get_logger(service=service)


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's `log_config`: its loggers write through the root handler `configure`
    installs (uvicorn applies this in every worker process it spawns)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"canary": {"()": "services.common.logging.stdlib_handler"}},
        "root": {"handlers": ["canary"], "level": "WARNING"},
        "loggers": {
            "uvicorn": {"handlers": [], "level": "INFO", "propagate": True},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": [], "level": "INFO", "propagate": True},
        },
    }


def get_logger(**bind) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(**bind)
