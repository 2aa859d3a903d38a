"""CLI commands of the transcription service, in `canary-voice media` (registered by services.cli).

    canary-voice media transcription-worker   (run the worker)
    canary-voice media transcribe FILE.wav
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer


def register(media: typer.Typer) -> None:
    @media.command("transcription-worker")
    def transcription_worker() -> None:
        """Run the transcription worker in the foreground."""
        from services.transcription.worker import main

        asyncio.run(main())

    @media.command("transcribe")
    def transcribe(path: Path) -> None:
        """Transcribe a WAV file (any rate; stereo = callee left, agent right)."""
        import orjson

        from services.common import audio
        from services.transcription.engine import WhisperTranscriber

        pcm, rate, ch = audio.read_wav(path.read_bytes())
        t = WhisperTranscriber()
        if ch == 2:
            left, right = audio.split_stereo(pcm)
            result = t.transcribe_dual(audio.resample_pcm(left, rate), audio.resample_pcm(right, rate))
        else:
            result = t.transcribe(audio.resample_pcm(pcm, rate, ch))
        typer.echo(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode())
