"""CLI commands of the media services (plugged into `canary-voice` by services.cli).

    canary-voice media tts-worker | recording-worker | transcription-worker   (run a worker)
    canary-voice media say TEXT [--voice ID] [--speed S] [--pitch P] -o out.wav
    canary-voice media voices [--language en]
    canary-voice media transcribe FILE.wav
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    media = typer.Typer(help="TTS, recording and transcription services.", no_args_is_help=True)
    app.add_typer(media, name="media")

    @media.command("tts-worker")
    def tts_worker() -> None:
        """Run the TTS / audio_url worker in the foreground."""
        from services.tts.worker import main

        asyncio.run(main())

    @media.command("recording-worker")
    def recording_worker() -> None:
        """Run the recording worker in the foreground."""
        from services.recording.worker import main

        asyncio.run(main())

    @media.command("transcription-worker")
    def transcription_worker() -> None:
        """Run the transcription worker in the foreground."""
        from services.transcription.worker import main

        asyncio.run(main())

    @media.command("say")
    def say(text: str, voice: str = typer.Option("en-US-Neural2-F"), speed: float = 1.0, pitch: float = 0.0,
            out: Path = typer.Option(..., "-o", "--out", help="WAV file to write (8 kHz mono)")) -> None:
        """Render text or SSML to a WAV file."""
        from services.common import audio
        from services.tts.render import Renderer, TtsRequestError
        from services.tts.voices import get_voice

        from .validate import validate_tts

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
        from services.tts.voices import VOICES

        for v in VOICES.values():
            if v.language.lower().startswith(language.lower()):
                typer.echo(f"{v.id:22} {v.language:7} {v.gender:6} {v.type:8} {v.engine}")

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
