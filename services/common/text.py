"""Text that the log and Postgres can hold: no U+0000 anywhere.

Postgres refuses NUL in text and jsonb, so a NUL accepted at an edge would stop a
consumer later (or be dead-lettered there, far from the caller who sent it). Every
boundary where outside data enters (HTTP bodies, Kafka intake, flow-webhook answers,
CLI input) refuses it with the place it was found. Invalid Unicode (lone surrogates)
never gets this far: orjson refuses to parse or encode it.
"""

from __future__ import annotations

from typing import Any


def nul_path(value: Any) -> str | None:
    """Where the first string (or object key) holding U+0000 is, as ``a.b[2].c`` (``""`` for
    `value` itself); None when there is none. Iterative: any nesting depth."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        v, path = stack.pop()
        if isinstance(v, str):
            if "\x00" in v:
                return path
        elif isinstance(v, dict):
            items = list(v.items())
            for k, item in reversed(items):
                sub = f"{path}.{k}" if path else str(k)
                if isinstance(k, str) and "\x00" in k:
                    return sub.replace("\x00", "\\u0000")
                stack.append((item, sub))
        elif isinstance(v, (list, tuple)):
            for i in range(len(v) - 1, -1, -1):
                stack.append((v[i], f"{path}[{i}]"))
    return None
