"""services.lib.voices.ssml and textnorm: the SSML subset and say-as normalisation."""

import pytest

from services.lib.voices import textnorm
from services.lib.voices.ssml import Segment, SsmlError, parse, plain_text

DOCS_EXAMPLE = "Hello! Your verification code is <say-as interpret-as='digits'>123456</say-as>"


def test_docs_example_without_speak_wrapper():
    assert parse(DOCS_EXAMPLE) == [Segment(text="Hello! Your verification code is 1 2 3 4 5 6")]


def test_plain_text_is_never_parsed_as_xml():
    assert plain_text(parse("Tom & Jerry say 2 < 3  and 5 > 4")) == "Tom & Jerry say 2 < 3 and 5 > 4"
    assert parse("   ") == []


def test_bare_ampersand_inside_ssml_is_tolerated():
    assert plain_text(parse("Tom & Jerry<break time='1s'/>Fish &amp; chips")) == "Tom & Jerry Fish & chips"


def test_breaks_time_and_strength():
    segs = parse("<speak>a<break time='1.5s'/>b<break strength='weak'/>c<break/>d<break time='99s'/>e</speak>")
    assert [s.pause_ms for s in segs if s.is_pause] == [1500, 250, 500, 10_000]
    assert plain_text(segs) == "a b c d e"


def test_prosody_emphasis_nesting():
    segs = parse("<speak><prosody rate='slow' pitch='+2st' volume='+6dB'>x "
                 "<prosody rate='200%' pitch='-1st'>y</prosody></prosody>"
                 "<emphasis level='strong'>z</emphasis><prosody volume='silent'>w</prosody></speak>")
    x, y, z, w = segs
    assert (x.rate, x.pitch_st, x.volume_db) == (0.75, 2.0, 6.0)
    assert (y.rate, y.pitch_st, y.volume_db) == (1.5, 1.0, 6.0)
    assert z.rate < 1 and z.volume_db > 0
    assert w.silent and w.text == "w"


def test_sub_p_s_lang_and_namespace():
    segs = parse('<speak xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="en-US">'
                 '<p><s>One.</s><s><sub alias="World Wide Web Consortium">W3C</sub></s></p>'
                 '<lang xml:lang="de-DE">Guten Tag</lang></speak>')
    texts = [(s.text, s.lang) for s in segs if s.text]
    assert texts == [("One.", "en-US"), ("World Wide Web Consortium", "en-US"), ("Guten Tag", "de-DE")]
    assert [s.pause_ms for s in segs if s.is_pause] == [250, 850]


@pytest.mark.parametrize("kind,fmt,text,lang,expected", [
    ("digits", None, "12 34", "en-US", "1 2 3 4"),
    ("characters", None, "ab1", "en-US", "A B 1"),
    ("spell-out", None, "xyz", "en-US", "X Y Z"),
    ("telephone", None, "+1 (555) 123-4567", "en-US", "plus 1, 5 5 5, 1 2 3, 4 5 6 7"),
    ("telephone", None, "030 1234", "de-DE", "0 3 0, 1 2 3 4"),
    ("cardinal", None, "1,234", "en-US", "one thousand two hundred thirty-four"),
    ("cardinal", None, "1.234", "de-DE", "1234"),
    ("ordinal", None, "21", "en-US", "twenty-first"),
    ("ordinal", None, "3rd", "en-GB", "third"),
    ("ordinal", None, "112", "en-US", "one hundred twelfth"),
    ("ordinal", None, "40", "en-US", "fortieth"),
    ("ordinal", None, "3", "fr-FR", "3."),
    ("date", None, "2024-01-05", "en-US", "January fifth, 2024"),
    ("date", "dmy", "05/01/2024", "en-GB", "January fifth, 2024"),
    ("date", "md", "12/25", "en-US", "December twenty-fifth"),
    ("time", None, "14:30", "en-US", "two thirty P M"),
    ("time", "hms24", "14:05", "en-US", "fourteen oh five"),
    ("time", None, "9am", "en-US", "nine o'clock A M"),
    ("time", None, "14:30", "de-DE", "14:30"),
])
def test_say_as(kind, fmt, text, lang, expected):
    assert textnorm.say_as(text, kind, fmt, lang) == expected


def test_number_words():
    assert textnorm.number_words(0) == "zero"
    assert textnorm.number_words(1_000_001) == "one million one"
    assert textnorm.number_words(-45) == "minus forty-five"


@pytest.mark.parametrize("text,at,fragment", [
    # position = index of the offending character in the caller's text
    ("Hello <say-as interpret-as='digits'>12</say-as", 46, "malformed"),
    ("Hi <b>bold</b>", 3, "unsupported SSML element <b>"),
    ("ab <break time='soon'/>", 3, "invalid break time"),
    ("code <say-as interpret-as='digits'>none</say-as>", 5, "no digits"),
    ("x <say-as>1</say-as>", 2, "requires interpret-as"),
    ("x <say-as interpret-as='currency'>1</say-as>", 2, "unsupported interpret-as"),
    ("é & ü <prosody rate='warp'>x</prosody>", 6, "invalid prosody rate"),
    ("<speak><speak>x</speak></speak>", 7, "cannot be nested"),
    ("x <sub>y</sub>", 2, "requires alias"),
    ("<speak>a</speak><speak>b</speak>", 16, "malformed"),
    ('<!DOCTYPE x [<!ENTITY a "aaaa">]><speak>&a;</speak>', 0, "DOCTYPE"),
])
def test_errors_carry_position(text, at, fragment):
    with pytest.raises(SsmlError) as info:
        parse(text)
    assert fragment in info.value.message
    assert info.value.position == at
    assert info.value.to_dict() == {"message": info.value.message, "position": at}
