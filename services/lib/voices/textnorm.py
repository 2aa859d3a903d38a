"""Text normalisation for SSML ``<say-as>``.

The engines (Piper via espeak-ng phonemes, and espeak-ng itself) already read
plain numbers as cardinals in every language they support, so most
interpretations only need to re-shape the text: digits one by one, letters one
by one, phone numbers in groups. English gets spelled-out ordinals, dates and
times; other languages keep numerals the engine reads itself.
"""

from __future__ import annotations

import re

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
        "sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
_ORD_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}
MONTHS = "January February March April May June July August September October November December".split()


MAX_NUMBER_DIGITS = 15  # up to 999 trillion: what number_words spells; longer is not a number to say


class SayAsError(ValueError):
    """The content does not fit the requested interpretation."""


def number_words(n: int) -> str:
    """English cardinal words for an integer (``21`` -> ``twenty-one``)."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        t, o = divmod(n, 10)
        return _TENS[t] + ("-" + _ONES[o] if o else "")
    if n < 1000:
        h, r = divmod(n, 100)
        return _ONES[h] + " hundred" + (" " + number_words(r) if r else "")
    for value, name in _SCALES:
        if n >= value:
            q, r = divmod(n, value)
            return number_words(q) + " " + name + (" " + number_words(r) if r else "")
    raise AssertionError("unreachable")


def ordinal_words(n: int) -> str:
    """English ordinal words (``21`` -> ``twenty-first``)."""
    words = number_words(n)
    head, sep, last = words.rpartition("-") if "-" in words.split(" ")[-1] else words.rpartition(" ")
    if last in _ORD_IRREGULAR:
        last = _ORD_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def _int(text: str) -> int:
    cleaned = re.sub(r"[\s,._']", "", text)
    cleaned = re.sub(r"(st|nd|rd|th|º|ª|\.)$", "", cleaned, flags=re.I)
    if not re.fullmatch(r"[-+]?\d+", cleaned):
        raise SayAsError(f"not a number: {text[:40]!r}")
    if len(cleaned.lstrip("+-").lstrip("0")) > MAX_NUMBER_DIGITS:
        raise SayAsError(f"number longer than {MAX_NUMBER_DIGITS} digits")
    return int(cleaned)


def digits(text: str) -> str:
    """Read every digit separately: ``"123"`` -> ``"1 2 3"``."""
    ds = re.findall(r"\d", text)
    if not ds:
        raise SayAsError(f"no digits in {text!r}")
    return " ".join(ds)


def characters(text: str) -> str:
    """Spell out letters and digits one by one (upper-case so engines say letter names)."""
    chars = [c.upper() for c in text if not c.isspace()]
    if not chars:
        raise SayAsError("nothing to spell")
    return " ".join(chars)


def telephone(text: str, lang: str) -> str:
    """Read a phone number digit by digit, pausing between its groups."""
    groups = re.findall(r"\d+", text)
    if not groups:
        raise SayAsError(f"no digits in phone number {text!r}")
    spoken = ", ".join(" ".join(g) for g in groups)
    if text.strip().startswith("+") and lang.lower().startswith("en"):
        spoken = "plus " + spoken
    return spoken


def cardinal(text: str, lang: str) -> str:
    """A whole number; English as words, other languages as numerals for the engine."""
    n = _int(text)
    return number_words(n) if lang.lower().startswith("en") else str(n)


def ordinal(text: str, lang: str) -> str:
    """An ordinal; English as words (``3`` -> ``third``), else the numeral plus a dot."""
    n = _int(text)
    return ordinal_words(n) if lang.lower().startswith("en") else f"{n}."


def date(text: str, fmt: str | None, lang: str) -> str:
    """A date such as ``2024-01-05`` or ``1/5/2024``; ``fmt`` like ``mdy``/``dmy``/``ymd``."""
    parts = re.findall(r"\d+", text)
    if not parts or any(len(p) > 8 for p in parts):
        raise SayAsError(f"not a date: {text[:40]!r}")
    if not fmt:
        if len(parts) == 3 and len(parts[0]) == 4:
            fmt = "ymd"
        else:
            fmt = "mdy" if lang.lower() == "en-us" else "dmy"
    fmt = fmt.lower()
    if len(fmt) != len(parts) or set(fmt) - set("ymd"):
        raise SayAsError(f"date {text!r} does not match format {fmt!r}")
    fields = dict(zip(fmt, (int(p) for p in parts)))
    if "m" in fields and not 1 <= fields["m"] <= 12:
        raise SayAsError(f"bad month in {text!r}")
    if "d" in fields and not 1 <= fields["d"] <= 31:
        raise SayAsError(f"bad day in {text!r}")
    if not lang.lower().startswith("en"):
        return " ".join(str(fields[k]) for k in fmt)
    out = []
    if "m" in fields:
        out.append(MONTHS[fields["m"] - 1])
    if "d" in fields:
        out.append(ordinal_words(fields["d"]))
    spoken = " ".join(out)
    if "y" in fields:
        spoken = (spoken + ", " if spoken else "") + str(fields["y"])
    return spoken


def time(text: str, fmt: str | None, lang: str) -> str:
    """A clock time like ``14:30`` or ``2:30pm``; ``fmt`` ``hms12`` or ``hms24``."""
    m = re.fullmatch(r"\s*(\d{1,2})(?::(\d{2}))?(?::(\d{2}))?\s*([ap]\.?m\.?)?\s*", text, flags=re.I)
    if not m:
        raise SayAsError(f"not a time: {text!r}")
    h, mi = int(m.group(1)), int(m.group(2) or 0)
    ampm = (m.group(4) or "").replace(".", "").lower()
    if h > 23 or mi > 59 or (ampm and not 1 <= h <= 12):
        raise SayAsError(f"not a time: {text!r}")
    if not lang.lower().startswith("en"):
        return f"{h}:{mi:02d}"
    twelve = bool(ampm) or (fmt or "hms12").lower() == "hms12"
    if twelve:
        if not ampm:
            ampm = "am" if h < 12 else "pm"
            h = h % 12 or 12
        minutes = "o'clock" if mi == 0 else (f"oh {number_words(mi)}" if mi < 10 else number_words(mi))
        return f"{number_words(h)} {minutes} {' '.join(ampm.upper())}"
    minutes = "hundred" if mi == 0 else (f"oh {number_words(mi)}" if mi < 10 else number_words(mi))
    return f"{number_words(h)} {minutes}"


def say_as(text: str, interpret_as: str, fmt: str | None, lang: str) -> str:
    """Normalise ``text`` for ``<say-as interpret-as=...>``; unknown kinds read verbatim."""
    kind = interpret_as.strip().lower()
    if kind in ("digits", "number_digits"):
        return digits(text)
    if kind in ("characters", "spell-out", "verbatim", "letters"):
        return characters(text)
    if kind == "telephone":
        return telephone(text, lang)
    if kind in ("cardinal", "number"):
        return cardinal(text, lang)
    if kind == "ordinal":
        return ordinal(text, lang)
    if kind == "date":
        return date(text, fmt, lang)
    if kind == "time":
        return time(text, fmt, lang)
    raise SayAsError(f"unsupported interpret-as {interpret_as!r}")


SUPPORTED_SAY_AS = ("digits", "characters", "spell-out", "verbatim", "telephone", "cardinal", "number",
                    "ordinal", "date", "time")
