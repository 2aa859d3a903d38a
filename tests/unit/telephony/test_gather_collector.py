"""The DTMF collection rules (services/telephony/gather.py), driven by keys and a fake clock."""

from __future__ import annotations

from services.telephony.gather import Collector


def pin(**kw) -> Collector:
    c = Collector(num_digits=4, finish_on_key="#", timeout=10, inter_digit_timeout=3, **kw)
    c.start(0.0)
    return c


def feed(c: Collector, keys: str, t0: float = 1.0) -> list[bool]:
    return [c.press(k, t0 + i * 0.2) for i, k in enumerate(keys)]


def test_the_docs_pin_then_pound_reports_the_finish_key():
    c = pin()
    assert feed(c, "1234#") == [False, False, False, False, True]
    assert (c.digits, c.finished_on_key, c.outcome()) == ("1234", "#", "completed")


def test_num_digits_reached_waits_the_inter_digit_timeout_for_the_finish_key():
    c = pin()
    assert feed(c, "1234") == [False] * 4
    assert c.deadline() == 1.6 + 3  # the last key, then the inter-digit timeout
    # nothing more: the timer ends it, completed with the digits and no finish key
    assert (c.digits, c.finished_on_key, c.outcome()) == ("1234", None, "completed")


def test_a_fifth_key_that_is_not_the_finish_key_ends_the_gather_and_is_left_over():
    c = pin()
    assert feed(c, "12345") == [False] * 4 + [True]
    assert (c.digits, c.finished_on_key, c.leftover) == ("1234", None, "5")


def test_without_a_finish_key_num_digits_ends_the_gather_at_once():
    c = Collector(num_digits=4, finish_on_key="", timeout=10)
    c.start(0.0)
    assert feed(c, "1234") == [False, False, False, True]
    assert (c.digits, c.finished_on_key) == ("1234", None)


def test_the_finish_key_alone_completes_with_no_digits():
    c = pin()
    assert feed(c, "#") == [True]
    assert (c.digits, c.finished_on_key, c.outcome()) == ("", "#", "completed")


def test_no_key_is_a_timeout_at_the_first_input_timeout():
    c = pin()
    assert c.deadline() == 10 and c.outcome() == "timeout"


def test_without_num_digits_the_finish_key_ends_any_length():
    c = Collector(finish_on_key="#", timeout=5)
    c.start(0.0)
    assert feed(c, "98765#") == [False] * 5 + [True]
    assert (c.digits, c.finished_on_key) == ("98765", "#")
