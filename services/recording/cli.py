"""CLI commands of the recording service, in `canary-voice media` (registered by services.cli).

    canary-voice media recording-worker   (run the worker)
"""

from __future__ import annotations

import asyncio

import typer


def register(media: typer.Typer) -> None:
    @media.command("recording-worker")
    def recording_worker() -> None:
        """Run the recording worker in the foreground."""
        from services.recording.worker import main

        asyncio.run(main())
