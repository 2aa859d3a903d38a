"""The TTS voice catalog.

Every voice id maps to exactly one engine voice, and the catalog says honestly
what the caller gets:

* ``type="neural"`` only for voices rendered by Piper (a neural model). The only
  Piper voice bundled offline is en-US "Joe" (male), so ``en-US-Neural2-D`` and
  the documented ``en-US-Neural2-F`` both render with it; the catalog reports the
  gender actually heard (``male``) and a ``note`` saying so.
* ``type="standard"`` for espeak-ng voices (formant synthesis, 40+ languages).
  The documented ``en-GB-Neural2-A``, ``es-ES-Neural2-A`` and ``fr-FR-Neural2-A``
  ids are kept for API compatibility but rendered by espeak-ng, so their type is
  ``standard``.
* Every supported language has ``<lang>-Standard-A`` (female variant) and
  ``<lang>-Standard-B`` (male) espeak voices, e.g. ``de-DE-Standard-A``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

DEFAULT_VOICE = "en-US-Neural2-F"


@dataclass(frozen=True)
class Voice:
    """One selectable voice."""

    id: str
    language: str  # BCP-47, e.g. "en-US"
    language_name: str
    gender: str  # "female" | "male": what the rendered voice sounds like
    type: str  # "neural" | "standard"
    engine: str  # "piper" | "espeak"
    engine_voice: str  # piper model name, or espeak-ng voice (with +variant)
    note: str = ""

    def to_dict(self) -> dict:
        """JSON-friendly form for the API's voice listing."""
        d = asdict(self)
        d.pop("engine_voice")
        return d


# (BCP-47, espeak-ng voice *file* name, English name). File names, not espeak's
# language codes: espeak-ng 1.51 silently ignores a "+variant" suffix on a
# language code such as "en-gb", but honours it on the file name "en".
# Tests check that each voice exists and that its female variant is applied.
ESPEAK_LANGUAGES: list[tuple[str, str, str]] = [
    ("af-ZA", "af", "Afrikaans"),
    ("ar-XA", "ar", "Arabic"),
    ("bg-BG", "bg", "Bulgarian"),
    ("bn-IN", "bn", "Bengali"),
    ("ca-ES", "ca", "Catalan"),
    ("cmn-CN", "cmn", "Chinese (Mandarin)"),
    ("cs-CZ", "cs", "Czech"),
    ("cy-GB", "cy", "Welsh"),
    ("da-DK", "da", "Danish"),
    ("de-DE", "de", "German"),
    ("el-GR", "el", "Greek"),
    ("en-GB", "en", "English (UK)"),
    ("en-US", "en-US", "English (US)"),
    ("es-ES", "es", "Spanish (Spain)"),
    ("es-US", "es-419", "Spanish (Latin America)"),
    ("et-EE", "et", "Estonian"),
    ("eu-ES", "eu", "Basque"),
    ("fa-IR", "fa", "Persian"),
    ("fi-FI", "fi", "Finnish"),
    ("fr-FR", "fr", "French"),
    ("fr-BE", "fr-BE", "French (Belgium)"),
    ("ga-IE", "ga", "Irish"),
    ("gu-IN", "gu", "Gujarati"),
    ("he-IL", "he", "Hebrew"),
    ("hi-IN", "hi", "Hindi"),
    ("hr-HR", "hr", "Croatian"),
    ("hu-HU", "hu", "Hungarian"),
    ("hy-AM", "hy", "Armenian"),
    ("id-ID", "id", "Indonesian"),
    ("is-IS", "is", "Icelandic"),
    ("it-IT", "it", "Italian"),
    ("ja-JP", "ja", "Japanese"),
    ("ka-GE", "ka", "Georgian"),
    ("kn-IN", "kn", "Kannada"),
    ("ko-KR", "ko", "Korean"),
    ("lt-LT", "lt", "Lithuanian"),
    ("lv-LV", "lv", "Latvian"),
    ("ml-IN", "ml", "Malayalam"),
    ("mr-IN", "mr", "Marathi"),
    ("ms-MY", "ms", "Malay"),
    ("nb-NO", "nb", "Norwegian Bokmål"),
    ("nl-NL", "nl", "Dutch"),
    ("pa-IN", "pa", "Punjabi"),
    ("pl-PL", "pl", "Polish"),
    ("pt-BR", "pt-BR", "Portuguese (Brazil)"),
    ("pt-PT", "pt", "Portuguese (Portugal)"),
    ("ro-RO", "ro", "Romanian"),
    ("ru-RU", "ru", "Russian"),
    ("sk-SK", "sk", "Slovak"),
    ("sl-SI", "sl", "Slovenian"),
    ("sq-AL", "sq", "Albanian"),
    ("sr-RS", "sr", "Serbian"),
    ("sv-SE", "sv", "Swedish"),
    ("sw-KE", "sw", "Swahili"),
    ("ta-IN", "ta", "Tamil"),
    ("te-IN", "te", "Telugu"),
    ("th-TH", "th", "Thai"),
    ("tr-TR", "tr", "Turkish"),
    ("uk-UA", "uk", "Ukrainian"),
    ("ur-PK", "ur", "Urdu"),
    ("vi-VN", "vi", "Vietnamese"),
    ("yue-HK", "yue", "Chinese (Cantonese)"),
]

# espeak-ng voice variants: "+f3" is a female formant set; default is male.
_FEMALE_VARIANT = "+f3"

PIPER_JOE = "en_US-joe-medium"


def _build() -> dict[str, Voice]:
    voices: list[Voice] = [
        Voice("en-US-Neural2-D", "en-US", "English (US)", "male", "neural", "piper", PIPER_JOE),
        Voice(
            "en-US-Neural2-F", "en-US", "English (US)", "male", "neural", "piper", PIPER_JOE,
            note="Listed as female in the public docs; the only bundled neural en-US voice is male (Joe).",
        ),
    ]
    compat = {"en-GB-Neural2-A": "en-GB", "es-ES-Neural2-A": "es-ES", "fr-FR-Neural2-A": "fr-FR"}
    by_lang = {lang: (ev, name) for lang, ev, name in ESPEAK_LANGUAGES}
    for vid, lang in compat.items():
        ev, name = by_lang[lang]
        voices.append(Voice(
            vid, lang, name, "female", "standard", "espeak", ev + _FEMALE_VARIANT,
            note="Id kept for API compatibility; no bundled neural voice for this language, rendered by espeak-ng.",
        ))
    for lang, ev, name in ESPEAK_LANGUAGES:
        voices.append(Voice(f"{lang}-Standard-A", lang, name, "female", "standard", "espeak", ev + _FEMALE_VARIANT))
        voices.append(Voice(f"{lang}-Standard-B", lang, name, "male", "standard", "espeak", ev))
    return {v.id: v for v in voices}


VOICES: dict[str, Voice] = _build()


class UnknownVoice(KeyError):
    """The voice id is not in the catalog."""


def get_voice(voice_id: str | None) -> Voice:
    """Look up a voice by id (``None`` -> :data:`DEFAULT_VOICE`)."""
    try:
        return VOICES[voice_id or DEFAULT_VOICE]
    except KeyError:
        raise UnknownVoice(voice_id) from None


def voice_for_language(lang: str, gender: str | None = None) -> Voice | None:
    """Best voice for an SSML ``xml:lang`` value (``de``, ``de-DE``, ``en-us``...).

    Prefers a neural voice, then an exact region match, then any voice of the
    same primary language.
    """
    want = lang.strip().lower()
    primary = want.split("-")[0]
    candidates = [v for v in VOICES.values() if v.language.lower() == want]
    if not candidates:
        candidates = [v for v in VOICES.values() if v.language.lower().split("-")[0] == primary]
    if gender:
        candidates = [v for v in candidates if v.gender == gender] or candidates
    candidates.sort(key=lambda v: (v.type != "neural", v.id))
    return candidates[0] if candidates else None


def languages() -> list[str]:
    """All selectable BCP-47 languages."""
    return sorted({v.language for v in VOICES.values()})
