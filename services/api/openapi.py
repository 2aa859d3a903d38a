"""Write schemas/openapi.json (OpenAPI 3.1) from the app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
OPENAPI_PATH = ROOT / "schemas" / "openapi.json"


def document() -> dict[str, Any]:
    from services.api.app import create_app

    return create_app().openapi()


def render(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write(path: Path = OPENAPI_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render(document()))
    return path
