"""TTS service: voice catalog, SSML, engines (Piper, espeak-ng), render cache, audio_url fetch."""
