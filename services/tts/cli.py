"""CLI commands of the TTS service, in `canary-voice media` (registered by services.cli).

    canary-voice media tts-worker                                            (run the worker)
    canary-voice media say TEXT [--voice ID] [--speed S] [--pitch P] -o out.wav
    canary-voice media voices [--language en]
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer


def register(media: typer.Typer) -> None:
    @media.command("tts-worker")
    def tts_worker() -> None:
        """Run the TTS / audio_url worker in the foreground."""
        from services.tts.worker import main

        asyncio.run(main())

    @media.command("say")
    def say(text: str, voice: str = typer.Option("en-US-Neural2-F"), speed: float = 1.0, pitch: float = 0.0,
            out: Path = typer.Option(..., "-o", "--out", help="WAV file to write (8 kHz mono)")) -> None:
        """Render text or SSML to a WAV file."""
        from services.common import audio
        from services.lib.voices.catalog import get_voice
        from services.lib.voices.validate import validate_tts
        from services.tts.render import Renderer, TtsRequestError

        errors = validate_tts({"text": text, "voice": voice, "speed": speed, "pitch": pitch})
        if errors:
            for e in errors:
                typer.secho(f"error: {e['field']}: {e['message']}" + (f" (at {e['position']})" if "position" in e
                                                                       else ""), fg="red", err=True)
            raise typer.Exit(1)
        try:
            pcm = Renderer().synthesize(text, get_voice(voice), speed, pitch)
        except TtsRequestError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(1)
        out.write_bytes(audio.write_wav(pcm))
        typer.echo(f"{out}: {audio.duration_ms(pcm)} ms")

    @media.command("voices")
    def voices(language: str = typer.Option("", help="BCP-47 prefix, e.g. en or de-DE")) -> None:
        """List the voice catalog."""
        from services.lib.voices.catalog import VOICES

        for v in VOICES.values():
            if v.language.lower().startswith(language.lower()):
                typer.echo(f"{v.id:22} {v.language:7} {v.gender:6} {v.type:8} {v.engine}")
