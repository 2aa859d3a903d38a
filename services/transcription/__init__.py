"""Transcription service: faster-whisper over 8 kHz call audio, mono or dual channel."""
