"""Language options: BCP-47 tags to whisper languages, and which model hears which."""

from __future__ import annotations

import pytest

from services.lib.languages import language_code, language_problem
from services.transcription.engine import LanguageRouter


@pytest.mark.parametrize("tag,code", [(None, "en"), ("en", "en"), ("en-GB", "en"), ("es-MX", "es"), ("pt-BR", "pt"),
                                      ("DE", "de"), ("fr-FR", "fr"), ("zh-Hant-TW", "zh"), ("auto", None)])
def test_tags_map_to_whisper_languages(tag, code):
    assert language_code(tag) == code


@pytest.mark.parametrize("tag", ["", "english", "xx", "es_MX", "e", "-es", "es-", "klingon-KL"])
def test_what_is_not_a_language_is_refused_with_a_reason(tag):
    with pytest.raises(ValueError, match="BCP-47"):
        language_code(tag)
    assert "BCP-47" in language_problem(tag)


def test_a_non_string_is_a_problem_and_none_is_not():
    assert language_problem(None) is None and language_problem(3) and language_problem("es") is None


class Fake:
    def __init__(self, name):
        self.name, self.asked, self._model_path = name, [], None

    def transcribe(self, pcm, language=None):
        self.asked.append(language)
        return self.name


def test_english_goes_to_the_fast_model_everything_else_to_the_multilingual_one():
    en, multi = Fake("tiny.en"), Fake("base")
    r = LanguageRouter(en, multi)
    assert [r.transcribe(b"", t) for t in (None, "en-US", "es", "auto", "de-DE")] == [
        "tiny.en", "tiny.en", "base", "base", "base"]
    assert en.asked == ["en", "en"] and multi.asked == ["es", None, "de"]  # None: whisper detects it
