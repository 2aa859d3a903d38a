"""SSML subset parser: text or SSML in, a flat list of :class:`Segment` out.

Supported: ``speak``, ``say-as`` (digits, characters/spell-out, telephone,
cardinal, ordinal, date, time), ``break`` (time / strength), ``prosody``
(rate / pitch / volume), ``emphasis``, ``sub``, ``p``, ``s``, ``lang``.

Input need not start with ``<speak>``: plain text that contains SSML tags, such
as ``Your code is <say-as interpret-as='digits'>123456</say-as>``, is wrapped
in ``<speak>`` first. Text without any tag is never parsed as XML, so ``Tom &
Jerry`` or ``2 < 3`` stay plain text; inside SSML a bare ``&`` is tolerated.

Parsing uses the stdlib expat parser directly (it underlies xml.etree) because
it reports the byte offset of every element and error, which we turn into a
character position in the *caller's* text for :class:`SsmlError`. DOCTYPE
declarations are refused, which rules out entity-expansion attacks the same
way defusedxml does.

Untrusted input is bounded: at most :data:`MAX_SSML_CHARS` characters and
:data:`MAX_DEPTH` nested elements (deeper used to exhaust the recursion of the
tree walk), ``say-as`` numbers of at most ``textnorm.MAX_NUMBER_DIGITS`` digits,
and every regular expression runs in linear time (the tag detector used to be
quadratic in a run of spaces). Each refusal is an :class:`SsmlError` with a
position, never another exception.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field, replace
from xml.parsers import expat

from . import textnorm

MAX_BREAK_MS = 10_000
MAX_SSML_CHARS = 5000  # what the API accepts in tts.text
MAX_DEPTH = 32  # nested elements, <speak> included; real SSML needs a handful
# A tag: `<`, optional `/`, a name, then attributes and/or `/` up to `>`. Written so that no
# two parts can match the same characters (a run of spaces has one way to match), which keeps
# the search linear; the former `<\s*/?\s*` and `(\s[^<>]*)?/?\s*>` were quadratic in spaces.
_TAG_RE = re.compile(r"<\s*(?:/\s*)?[A-Za-z][\w:.-]*(?:\s[^<>]*|/\s*)?>")
_BARE_AMP_RE = re.compile(r"&(?!(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#x[0-9A-Fa-f]+);)")
_SSML_NS = "http://www.w3.org/2001/10/synthesis"
_BREAK_STRENGTH_MS = {"none": 0, "x-weak": 100, "weak": 250, "medium": 500, "strong": 750, "x-strong": 1000}
_RATE_WORDS = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.25, "x-fast": 1.5}
_PITCH_WORDS = {"x-low": -6.0, "low": -3.0, "medium": 0.0, "default": 0.0, "high": 3.0, "x-high": 6.0}
_VOLUME_WORDS = {"silent": None, "x-soft": -12.0, "soft": -6.0, "medium": 0.0, "default": 0.0,
                 "loud": 6.0, "x-loud": 10.0}
# emphasis level -> (rate factor, volume dB): slower and louder reads as stressed.
_EMPHASIS = {"strong": (0.85, 4.0), "moderate": (0.92, 2.0), "none": (1.0, 0.0), "reduced": (1.1, -4.0)}
_SENTENCE_PAUSE_MS = 250
_PARAGRAPH_PAUSE_MS = 600


class SsmlError(ValueError):
    """Malformed or unsupported SSML. ``position`` is a 0-based character offset
    into the text the caller supplied (the API returns it in its 422 body)."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at character {position})")
        self.message = message
        self.position = position

    def to_dict(self) -> dict:
        """Error detail for API responses."""
        return {"message": self.message, "position": self.position}


@dataclass(frozen=True)
class Segment:
    """A run of text with uniform prosody, or a pause (``text == ""``)."""

    text: str = ""
    pause_ms: int = 0
    rate: float = 1.0  # multiplier on the request's speed
    pitch_st: float = 0.0  # semitones added to the request's pitch
    volume_db: float = 0.0  # None-free: "silent" is expressed as -inf below
    lang: str | None = None  # xml:lang override, None = the voice's language
    silent: bool = False

    @property
    def is_pause(self) -> bool:
        """True for a pure pause segment."""
        return not self.text


@dataclass
class _Node:
    tag: str
    attrs: dict[str, str]
    pos: int  # byte offset in the parsed document
    children: list["_Node | str"] = field(default_factory=list)


def looks_like_ssml(text: str) -> bool:
    """Whether ``text`` contains anything that looks like an XML tag."""
    return bool(_TAG_RE.search(text))


class _Doc:
    """The document handed to expat plus a map back to caller positions."""

    def __init__(self, text: str) -> None:
        wrap = not text.lstrip().startswith(("<speak", "<?xml", "<!DOCTYPE"))
        prefix = "<speak>" if wrap else ""
        # Each inserted chunk shifts later positions; remember (doc_pos, cumulative shift).
        self._marks: list[int] = []
        self._shifts: list[int] = []
        out, shift, last = [prefix], len(prefix), 0
        self._add_mark(len(prefix), shift)
        for m in _BARE_AMP_RE.finditer(text):
            out.append(text[last:m.start()] + "&amp;")
            shift += 4
            last = m.end()
            self._add_mark(m.end() + shift, shift)
        out.append(text[last:])
        if wrap:
            out.append("</speak>")
        self.text = "".join(out)
        self.data = self.text.encode("utf-8")
        self.original_len = len(text)

    def _add_mark(self, doc_pos: int, shift: int) -> None:
        self._marks.append(doc_pos)
        self._shifts.append(shift)

    def char_pos(self, byte_index: int) -> int:
        """Convert a byte offset in the document to a character offset in the input."""
        byte_index = max(0, min(byte_index, len(self.data)))
        doc_char = len(self.data[:byte_index].decode("utf-8", errors="ignore"))
        i = bisect.bisect_right(self._marks, doc_char) - 1
        shift = self._shifts[max(i, 0)]
        return max(0, min(doc_char - shift, self.original_len))


def _parse_tree(doc: _Doc) -> _Node:
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True  # one text child per run, not one per entity or line
    stack: list[_Node] = []
    root: list[_Node] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        if len(stack) >= MAX_DEPTH:
            raise SsmlError(f"SSML nested deeper than {MAX_DEPTH} elements", doc.char_pos(parser.CurrentByteIndex))
        ns, _, local = name.rpartition(" ")
        if ns and ns != _SSML_NS:
            raise SsmlError(f"unsupported namespace {ns[:80]!r}", doc.char_pos(parser.CurrentByteIndex))
        clean = {k.rpartition(" ")[2] if not k.startswith("http://www.w3.org/XML/1998/namespace") else "xml:" + k.rpartition(" ")[2]: v
                 for k, v in attrs.items()}
        node = _Node(local, clean, parser.CurrentByteIndex)
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)

    def end(name: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        if stack:
            stack[-1].children.append(data)

    def doctype(*_args: object) -> None:
        raise SsmlError("DOCTYPE is not allowed in SSML", doc.char_pos(max(doc.data.find(b"<!DOCTYPE"), 0)))

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    try:
        parser.Parse(doc.data, True)
    except expat.ExpatError as exc:
        msg = expat.ErrorString(exc.code) if exc.code else str(exc)
        raise SsmlError(f"malformed SSML: {msg}", doc.char_pos(parser.ErrorByteIndex)) from None
    if not root or root[0].tag != "speak":
        raise SsmlError("SSML root element must be <speak>", 0)
    return root[0]


def _parse_time_ms(value: str) -> int | None:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*", value)
    if not m:
        return None
    ms = float(m.group(1)) * (1000 if m.group(2) == "s" else 1)
    return int(min(ms, MAX_BREAK_MS))


def _parse_rate(value: str) -> float | None:
    v = value.strip().lower()
    if v in _RATE_WORDS:
        return _RATE_WORDS[v]
    m = re.fullmatch(r"([+-]?\d+(?:\.\d+)?)\s*%", v)
    if m:
        pct = float(m.group(1))
        # "+10%" is relative to the current rate, "80%" is absolute percentage.
        factor = 1 + pct / 100 if m.group(1)[0] in "+-" else pct / 100
    else:
        m = re.fullmatch(r"\d+(?:\.\d+)?", v)
        if not m:
            return None
        factor = float(v)
    return factor if 0.2 <= factor <= 4.0 else None


def _parse_pitch(value: str) -> float | None:
    v = value.strip().lower()
    if v in _PITCH_WORDS:
        return _PITCH_WORDS[v]
    m = re.fullmatch(r"([+-]\d+(?:\.\d+)?)\s*st", v)
    if m:
        return float(m.group(1))
    m = re.fullmatch(r"([+-]\d+(?:\.\d+)?)\s*%", v)
    if m:
        import math

        ratio = 1 + float(m.group(1)) / 100
        return 12 * math.log2(ratio) if ratio > 0 else None
    return None


def _parse_volume(value: str) -> float | None | str:
    v = value.strip().lower()
    if v in _VOLUME_WORDS:
        return "silent" if _VOLUME_WORDS[v] is None else _VOLUME_WORDS[v]
    m = re.fullmatch(r"([+-]\d+(?:\.\d+)?)\s*db", v)
    return float(m.group(1)) if m else None


def _text_of(node: _Node, doc: _Doc) -> str:
    parts = []
    for c in node.children:
        if isinstance(c, str):
            parts.append(c)
        else:
            raise SsmlError(f"<{node.tag}> may only contain text, found <{c.tag}>", doc.char_pos(c.pos))
    return "".join(parts)


class _Builder:
    def __init__(self, doc: _Doc, lang: str) -> None:
        self.doc = doc
        self.default_lang = lang
        self.out: list[Segment] = []

    def err(self, node: _Node, msg: str) -> SsmlError:
        return SsmlError(msg, self.doc.char_pos(node.pos))

    def emit_text(self, text: str, style: Segment) -> None:
        text = re.sub(r"\s+", " ", text)
        if not text.strip():
            return
        prev = self.out[-1] if self.out else None
        if prev and not prev.is_pause and replace(prev, text="") == replace(style, text=""):
            self.out[-1] = replace(prev, text=prev.text + text)
        else:
            self.out.append(replace(style, text=text, pause_ms=0))

    def emit_pause(self, ms: int) -> None:
        if ms <= 0:
            return
        if self.out and self.out[-1].is_pause:
            self.out[-1] = replace(self.out[-1], pause_ms=self.out[-1].pause_ms + ms)
        else:
            self.out.append(Segment(pause_ms=ms))

    def walk(self, node: _Node, style: Segment) -> None:
        for child in node.children:
            if isinstance(child, str):
                self.emit_text(child, style)
            else:
                self.element(child, style)

    def element(self, n: _Node, style: Segment) -> None:
        lang = style.lang or self.default_lang
        if n.tag == "speak":
            raise self.err(n, "<speak> cannot be nested")
        elif n.tag == "break":
            if n.children:
                raise self.err(n, "<break> must be empty")
            if "time" in n.attrs:
                ms = _parse_time_ms(n.attrs["time"])
                if ms is None:
                    raise self.err(n, f"invalid break time {n.attrs['time'][:40]!r} (use e.g. 500ms or 1s)")
            else:
                strength = n.attrs.get("strength", "medium")
                if strength not in _BREAK_STRENGTH_MS:
                    raise self.err(n, f"invalid break strength {strength[:40]!r}")
                ms = _BREAK_STRENGTH_MS[strength]
            self.emit_pause(ms)
        elif n.tag == "say-as":
            kind = n.attrs.get("interpret-as")
            if not kind:
                raise self.err(n, "<say-as> requires interpret-as")
            try:
                spoken = textnorm.say_as(_text_of(n, self.doc), kind, n.attrs.get("format"), lang)
            except textnorm.SayAsError as exc:
                raise self.err(n, str(exc)) from None
            self.emit_text(" " + spoken + " ", style)
        elif n.tag == "sub":
            if "alias" not in n.attrs:
                raise self.err(n, "<sub> requires alias")
            _text_of(n, self.doc)
            self.emit_text(" " + n.attrs["alias"] + " ", style)
        elif n.tag == "prosody":
            new = style
            if "rate" in n.attrs:
                r = _parse_rate(n.attrs["rate"])
                if r is None:
                    raise self.err(n, f"invalid prosody rate {n.attrs['rate'][:40]!r}")
                new = replace(new, rate=new.rate * r)
            if "pitch" in n.attrs:
                p = _parse_pitch(n.attrs["pitch"])
                if p is None:
                    raise self.err(n, f"invalid prosody pitch {n.attrs['pitch'][:40]!r} (use e.g. +2st, -10%, high)")
                new = replace(new, pitch_st=new.pitch_st + p)
            if "volume" in n.attrs:
                v = _parse_volume(n.attrs["volume"])
                if v is None:
                    raise self.err(n, f"invalid prosody volume {n.attrs['volume'][:40]!r} (use e.g. +6dB, loud)")
                new = replace(new, silent=True) if v == "silent" else replace(new, volume_db=new.volume_db + v)
            self.walk(n, new)
        elif n.tag == "emphasis":
            level = n.attrs.get("level", "moderate")
            if level not in _EMPHASIS:
                raise self.err(n, f"invalid emphasis level {level[:40]!r}")
            rate, vol = _EMPHASIS[level]
            self.walk(n, replace(style, rate=style.rate * rate, volume_db=style.volume_db + vol))
        elif n.tag in ("p", "s"):
            self.emit_pause(0)
            self.walk(n, style)
            self.emit_pause(_PARAGRAPH_PAUSE_MS if n.tag == "p" else _SENTENCE_PAUSE_MS)
        elif n.tag in ("lang", "voice"):
            new_lang = n.attrs.get("xml:lang") or n.attrs.get("lang")
            if not new_lang or not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", new_lang):
                raise self.err(n, f"<{n.tag}> requires a valid xml:lang")
            self.walk(n, replace(style, lang=new_lang))
        else:
            raise self.err(n, f"unsupported SSML element <{n.tag[:40]}>")


def parse(text: str, lang: str = "en-US") -> list[Segment]:
    """Parse text or SSML into segments; raise :class:`SsmlError` if malformed.

    ``lang`` is the voice's language, used by language-dependent ``say-as``.
    Pauses at the very start or end are dropped (telephony adds its own).
    """
    if len(text) > MAX_SSML_CHARS:
        raise SsmlError(f"text longer than {MAX_SSML_CHARS} characters", MAX_SSML_CHARS)
    if not looks_like_ssml(text):
        plain = re.sub(r"\s+", " ", text).strip()
        return [Segment(text=plain)] if plain else []
    doc = _Doc(text)
    root = _parse_tree(doc)
    top_lang = root.attrs.get("xml:lang")
    b = _Builder(doc, lang)
    b.walk(root, Segment(lang=top_lang) if top_lang else Segment())
    segs = b.out
    while segs and segs[-1].is_pause:
        segs.pop()
    while segs and segs[0].is_pause:
        segs.pop(0)
    return [replace(s, text=_tidy(s.text)) if s.text else s for s in segs]


def _tidy(text: str) -> str:
    # say-as output is padded with spaces; drop those left before punctuation.
    return re.sub(r"\s+([,.;:!?])", r"\1", re.sub(r"\s+", " ", text)).strip()


def plain_text(segments: list[Segment]) -> str:
    """The spoken words only (for logs, captions and tests)."""
    return " ".join(s.text for s in segments if s.text).strip()
