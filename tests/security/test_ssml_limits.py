"""SSML from a request (tts.text) is untrusted: bounded depth, bounded numbers, linear-time
parsing, and every refusal a 422 `invalid_ssml` with the position, never a 500.

Before: 714 nested <s> raised RecursionError (a 500), a 4,900-digit say-as cardinal raised
Python's int-conversion ValueError (a 500), and the tag detector took ~100-250 ms for
5,000 characters of spaces (quadratic: 20,000 took seconds)."""

from __future__ import annotations

import re
import time

import pytest

from services.lib.voices import ssml, textnorm
from services.lib.voices.ssml import SsmlError, looks_like_ssml, parse

pytestmark = pytest.mark.integration

CALL = {"to": "+15551234567", "from": "+15559876543"}


async def post_tts(api, acct, text: str):
    return await api.post("/v1/voice/calls", headers=acct.test, json={**CALL, "tts": {"text": text}})


def assert_invalid_ssml(r, position: int | None = None) -> str:
    assert r.status_code == 422, (r.status_code, r.text[:300])
    e = r.json()["error"]
    assert set(e) == {"code", "message", "field"} and e["code"] == "invalid_ssml" and e["field"] == "tts.text", e
    m = re.search(r"\(at character (\d+)\)$", e["message"])
    assert m, e["message"]
    if position is not None:
        assert int(m.group(1)) == position, e["message"]
    return e["message"]


async def test_deep_nesting_is_a_422_with_the_position(api, acct):
    msg = assert_invalid_ssml(await post_tts(api, acct, "<s>" * 714 + "x" + "</s>" * 714))
    assert "nested deeper than" in msg
    # the first element too deep is where the error points (<speak> is the wrapper's)
    depth = ssml.MAX_DEPTH
    assert_invalid_ssml(await post_tts(api, acct, "<s>" * depth + "x" + "</s>" * depth), 3 * (depth - 1))
    # within the limit it is fine (a real document nests a handful)
    assert parse("<s>" * (depth - 2) + "x" + "</s>" * (depth - 2))[0].text == "x"
    with pytest.raises(SsmlError):  # the parser itself, whoever calls it
        parse("<speak>" + "<p>" * 5000 + "</speak>")


async def test_huge_say_as_numbers_are_a_422(api, acct):
    digits = "9" * 4900
    for kind, fmt in (("cardinal", ""), ("ordinal", ""), ("number", ""), ("date", " format='y'")):
        text = f"Your code: <say-as interpret-as='{kind}'{fmt}>{digits}</say-as>"
        msg = assert_invalid_ssml(await post_tts(api, acct, text), len("Your code: "))
        assert digits not in msg
    text = f"<speak xml:lang='de-DE'><say-as interpret-as='cardinal'>{digits}</say-as></speak>"
    assert_invalid_ssml(await post_tts(api, acct, text))
    # the largest number still spelled
    assert textnorm.cardinal("9" * 15, "en-US").startswith("nine hundred ninety-nine trillion")


async def test_spaces_inside_a_tag_cost_linear_time(api, acct):
    t0 = time.perf_counter()
    assert_invalid_ssml(await post_tts(api, acct, "<a" + " " * 4990 + "/>"), 0)
    assert time.perf_counter() - t0 < 2.0  # the whole request, on a loaded machine
    for attack in ("<" + " " * 20_000, "<a" + " " * 20_000, "<" + " " * 10_000 + "/" + " " * 10_000,
                   "<a/" + " " * 20_000, "< " * 10_000):
        t0 = time.perf_counter()
        looks_like_ssml(attack)
        assert time.perf_counter() - t0 < 0.25, attack[:5]  # was seconds: quadratic


def test_the_tag_detector_still_finds_the_same_tags():
    for text, tag in (("Code <say-as interpret-as='digits'>1</say-as>", True), ("a<break/>b", True),
                      ("a<break />b", True), ("a< /s >b", True), ("a</s >b", True), ("a<br/ >", True),
                      ("2 < 3 and 5 > 4", False), ("Tom & Jerry", False), ("<3 <3", False), ("a <> b", False)):
        assert looks_like_ssml(text) is tag, text


def test_parsing_stays_fast_and_bounded():
    for attack in ("<speak>" + "&" * 4900 + "</speak>", "<speak>" + "a<break time='0ms'/>" * 240 + "</speak>",
                   "<speak><prosody rate='" + "1" * 4900 + "'>x</prosody></speak>", "<s>" * 30 + "</s>" * 30):
        t0 = time.perf_counter()
        try:
            parse(attack)
        except SsmlError:
            pass
        assert time.perf_counter() - t0 < 0.5, attack[:20]
    with pytest.raises(SsmlError) as info:
        parse("<speak>" + "a" * 6000 + "</speak>")
    assert "longer than" in info.value.message
