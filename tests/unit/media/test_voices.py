"""Voice catalog and validate_tts."""

import pytest

from services.lib.voices.catalog import DEFAULT_VOICE, VOICES, get_voice, languages, voice_for_language, UnknownVoice
from services.lib.voices.validate import validate_tts

DOCS_VOICES = ["en-US-Neural2-F", "en-US-Neural2-D", "en-GB-Neural2-A", "es-ES-Neural2-A", "fr-FR-Neural2-A"]


def test_documented_voice_ids_exist():
    for vid in DOCS_VOICES:
        assert get_voice(vid).id == vid
    assert get_voice(None).id == DEFAULT_VOICE == "en-US-Neural2-F"


def test_types_are_honest():
    for v in VOICES.values():
        assert v.type == ("neural" if v.engine == "piper" else "standard"), v.id
        assert v.gender in ("female", "male") and v.language and v.language_name
    # Only the bundled Piper voice is neural; the other documented ids are espeak-ng.
    assert {v.id for v in VOICES.values() if v.type == "neural"} == {"en-US-Neural2-F", "en-US-Neural2-D"}
    assert get_voice("es-ES-Neural2-A").engine == "espeak"
    assert get_voice("en-US-Neural2-F").note  # says the rendered voice is male


def test_forty_plus_languages_selectable_by_id():
    assert len(languages()) >= 40
    de = get_voice("de-DE-Standard-A")
    assert (de.engine, de.engine_voice, de.gender) == ("espeak", "de+f3", "female")
    assert get_voice("ja-JP-Standard-B").engine_voice == "ja"
    with pytest.raises(UnknownVoice):
        get_voice("xx-XX-Standard-Z")


def test_voice_for_language():
    assert voice_for_language("en-US").type == "neural"
    assert voice_for_language("de").language == "de-DE"
    assert voice_for_language("pt-BR", "male").id == "pt-BR-Standard-B"
    assert voice_for_language("tlh") is None


def test_to_dict_hides_engine_internals():
    d = get_voice("fr-FR-Neural2-A").to_dict()
    assert d["id"] == "fr-FR-Neural2-A" and d["type"] == "standard" and "engine_voice" not in d


def _fields(errors):
    return [e["field"] for e in errors]


def test_validate_accepts_docs_examples():
    assert validate_tts({"text": "Hello! This is a call from Canary. Press 1 to confirm.",
                         "voice": "en-US-Neural2-F"}) == []
    assert validate_tts({"text": "Hello! Your verification code is <say-as interpret-as='digits'>123456"
                                 "</say-as>", "voice": "en-US-Neural2-F", "speed": 1.0, "pitch": 0}) == []
    assert validate_tts({"text": "Please enter your 4-digit PIN followed by the pound key."}) == []


def test_validate_unknown_voice_lists_valid_ids():
    (err,) = validate_tts({"text": "hi", "voice": "en-US-Wavenet-Z"})
    assert err["field"] == "tts.voice" and "en-US-Neural2-F" in err["allowed"] and len(err["allowed"]) == len(VOICES)


@pytest.mark.parametrize("tts,field", [
    ({"text": "hi", "speed": 0.4}, "tts.speed"),
    ({"text": "hi", "speed": 2.01}, "tts.speed"),
    ({"text": "hi", "speed": True}, "tts.speed"),
    ({"text": "hi", "speed": "fast"}, "tts.speed"),
    ({"text": "hi", "pitch": -21}, "tts.pitch"),
    ({"text": "hi", "pitch": 20.5}, "tts.pitch"),
    ({"text": ""}, "tts.text"),
    ({"text": "x" * 5001}, "tts.text"),
    ({"text": "<break time='1s'/>"}, "tts.text"),
    ({"text": "hi", "colour": "blue"}, "tts.colour"),
])
def test_validate_rejects(tts, field):
    assert _fields(validate_tts(tts)) == [field]


def test_validate_ssml_error_has_position():
    (err,) = validate_tts({"text": "Code <say-as interpret-as='digits'>12</say-as"})
    assert err["field"] == "tts.text" and err["position"] == 45


def test_validate_edges_and_non_object():
    assert validate_tts({"text": "hi", "speed": 0.5, "pitch": -20}) == []
    assert validate_tts({"text": "hi", "speed": 2, "pitch": 20}) == []
    assert _fields(validate_tts("hello")) == ["tts"]
