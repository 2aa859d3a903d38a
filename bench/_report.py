"""What every bench's entry point does with its coroutine: a bench reports, it never crashes."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Coroutine


def run_reporting(main: Coroutine[Any, Any, int]) -> None:
    """Run `main` and exit with its code (0 on target, 1 behind); an error is reported as
    BEHIND with exit 2 instead of a traceback."""
    try:
        code = asyncio.run(main)
    except Exception as exc:
        print(f"BEHIND: the bench could not run: {type(exc).__name__}: {exc}")
        code = 2
    sys.exit(code)
