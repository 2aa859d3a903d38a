"""Speech gather building blocks: the VAD endpointer and hint matching."""

from services.common.audio import silence, tone
from services.lib.speech import Endpointer, best_hint


def frames(pcm):
    return [pcm[i:i + 320] for i in range(0, len(pcm), 320)]


def test_endpointer_finds_an_utterance_between_silences():
    ep = Endpointer(end_silence_ms=400)
    events = [ep.feed(f) for f in frames(silence(500) + tone(300, 600) + silence(1000))]
    assert events.count("started") == 1 and events.count("ended") == 1
    assert events.index("started") < events.index("ended")
    assert 600 <= len(ep.audio()) / 16 <= 600 + 400 + 200 + 60  # speech + end silence + preroll (ms)


def test_endpointer_ignores_a_click_and_caps_long_speech():
    ep = Endpointer()
    assert [ep.feed(f) for f in frames(tone(300, 40) + silence(400))] == [None] * 22
    long = Endpointer(max_ms=1000)
    out = [long.feed(f) for f in frames(tone(300, 3000))]
    assert "ended" in out and len(long.audio()) / 16 <= 1000 + 200


def test_best_hint():
    assert best_hint("I'd like billing please", ["sales", "support", "billing"]) == "billing"
    assert best_hint("suport", ["sales", "support"]) == "support"
    assert best_hint("something else entirely", ["sales", "support"]) is None
    assert best_hint("yes please", None) is None
