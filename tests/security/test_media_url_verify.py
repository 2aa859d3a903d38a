"""Signed recording URLs: a client-made signature of any shape is refused, never a 500."""

from __future__ import annotations

import time

from services.api import signing


def test_non_ascii_and_malformed_signatures_are_false():
    exp = int(time.time()) + 60
    good = signing.signature("rec_1", "mp3", exp, secret=None)
    assert signing.verify("rec_1", "mp3", exp, good)
    for bad in ("é", "\u0000", good[:-1] + "é", "", None, good.upper() + "x", "ä" * 64):
        assert signing.verify("rec_1", "mp3", exp, bad) is False, bad
    assert signing.verify("rec_1", "mp3", int(time.time()) - 1, signing.signature("rec_1", "mp3", int(time.time()) - 1)) is False
