"""Voices: the TTS voice catalog, the SSML subset and ``tts`` request validation.

Pure: the API (voice list, intake), the orchestrator (intake) and the TTS worker
(rendering) read the same catalog and rules.
"""
