"""services.common.media_store: content addressing, atomicity, aliases, ref safety."""

import hashlib

import pytest

from services.common.media_store import (InvalidRef, LocalMediaStore, MediaNotFound, MediaStore, make_ref,
                                         parse_ref)


def test_put_get_is_content_addressed(tmp_path):
    store = LocalMediaStore(tmp_path)
    ref = store.put(b"hello", "WAV")
    assert ref == f"sha256:{hashlib.sha256(b'hello').hexdigest()}.wav"
    assert store.get(ref) == b"hello"
    assert store.put(b"hello", ".wav") == ref  # idempotent
    assert store.exists(ref) and store.path(ref).is_file()
    assert isinstance(store, MediaStore)


def test_no_temp_files_left_behind(tmp_path):
    store = LocalMediaStore(tmp_path)
    for i in range(5):
        store.put(bytes([i]) * 100, "raw")
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_missing_and_malformed_refs(tmp_path):
    store = LocalMediaStore(tmp_path)
    with pytest.raises(MediaNotFound):
        store.get(make_ref(b"nope", "wav"))
    for bad in ("", "sha256:../../etc/passwd", "sha256:" + "a" * 64 + ".w/v", "md5:abc.wav",
                "sha256:" + "A" * 64 + ".wav"):
        with pytest.raises(InvalidRef):
            store.get(bad)
    with pytest.raises(InvalidRef):
        store.put(b"x", "../x")


def test_aliases(tmp_path):
    store = LocalMediaStore(tmp_path)
    assert store.get_alias("tts-abc") is None
    ref = store.put(b"data", "wav")
    store.set_alias("tts-abc", ref)
    assert store.get_alias("tts-abc") == ref
    with pytest.raises(InvalidRef):
        store.set_alias("../evil", ref)
    store.path(ref).unlink()  # blob gone (retention): alias is a miss, not an error
    assert store.get_alias("tts-abc") is None


def test_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CANARY_MEDIA_DIR", str(tmp_path / "m"))
    ref = LocalMediaStore().put(b"z", "txt")
    assert (tmp_path / "m").exists() and parse_ref(ref)[1] == "txt"
