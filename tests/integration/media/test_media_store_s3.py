"""MediaStore contract on both backends: LocalMediaStore and S3MediaStore.

The S3 side talks HTTP to a real S3-compatible server started here: moto in server
mode (``python -m moto.server``) on a free loopback port, in its own process. No
in-process mocking: botocore signs and sends real requests.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from services.common import audio
from services.common.media_store import (InvalidRef, LocalMediaStore, MediaNotFound, MediaStore, get_media_store,
                                         make_ref, set_media_store)

pytest.importorskip("boto3", reason="boto3 is not installed (runtime dependency of the S3 media store)")
pytest.importorskip("moto.server", reason='moto server mode is not installed (pip install "moto[server]")')

from botocore.exceptions import ClientError  # noqa: E402

from services.common.media_store_s3 import MediaIntegrityError, S3MediaStore  # noqa: E402

BUCKET = "canary-media-test"
# Dummy credentials for the local moto server only.
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-do-not-log",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """A moto S3 server on 127.0.0.1:<free port>, torn down after the module."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {**os.environ, **FAKE_ENV}
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url + "/", timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # an HTTP answer of any status means it is serving
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"moto server did not come up on {url}")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch, tmp_path):
    """Environment for S3MediaStore.from_env(): this test's own key prefix, fake creds,
    and no shared AWS config or instance metadata leaking in."""
    for k, v in FAKE_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CANARY_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("CANARY_S3_BUCKET", BUCKET)
    monkeypatch.setenv("CANARY_S3_PREFIX", f"test/{uuid.uuid4().hex[:12]}/")
    monkeypatch.setenv("CANARY_S3_REGION", "us-east-1")
    return os.environ


@pytest.fixture
def s3_store(s3_env) -> S3MediaStore:
    store = S3MediaStore.from_env()
    store.ensure_bucket()
    return store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> MediaStore:
    if request.param == "local":
        return LocalMediaStore(tmp_path / "media")
    return request.getfixturevalue("s3_store")


def _object_names(store) -> list[str]:
    """Every blob the backend holds (this test's prefix only, for S3)."""
    if isinstance(store, LocalMediaStore):
        root = store.root / "objects"
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []
    resp = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix + "objects/")
    return sorted(o["Key"] for o in resp.get("Contents", []))


def _delete_blob(store, ref: str) -> None:
    if isinstance(store, LocalMediaStore):
        store.path(ref).unlink()
    else:
        store.client.delete_object(Bucket=store.bucket, Key=store.key(ref))


@pytest.fixture(scope="module")
def wav_bytes() -> bytes:
    """A real 8 kHz mono WAV: 1.5 s of a two-tone prompt with a gap."""
    pcm = audio.tone(440, 600) + audio.silence(300) + audio.tone(880, 600)
    return audio.write_wav(pcm)


@pytest.fixture(scope="module")
def mp3_bytes(wav_bytes) -> bytes:
    import lameenc

    enc = lameenc.Encoder()
    enc.set_bit_rate(32)
    enc.set_in_sample_rate(8000)
    enc.set_channels(1)
    enc.set_quality(7)
    pcm, _, _ = audio.read_wav(wav_bytes)
    return bytes(enc.encode(pcm) + enc.flush())


# ---------------------------------------------------------------------------
# The contract, run on both backends
# ---------------------------------------------------------------------------


def test_implements_protocol(store):
    assert isinstance(store, MediaStore)


def test_round_trip_real_audio(store, wav_bytes, mp3_bytes):
    wav_ref = store.put(wav_bytes, "wav")
    mp3_ref = store.put(mp3_bytes, ".MP3")
    assert wav_ref == f"sha256:{hashlib.sha256(wav_bytes).hexdigest()}.wav"
    assert mp3_ref == make_ref(mp3_bytes, "mp3")
    assert store.get(wav_ref) == wav_bytes
    assert store.get(mp3_ref) == mp3_bytes
    pcm, rate, channels = audio.read_wav(store.get(wav_ref))
    assert (rate, channels) == (8000, 1) and audio.duration_ms(pcm) == 1500
    assert store.exists(wav_ref) and store.exists(mp3_ref)


def test_large_object_round_trip(store):
    data = os.urandom(3 * 1024 * 1024)  # ~3 min of 8 kHz s16 audio
    ref = store.put(data, "raw")
    assert store.get(ref) == data


def test_empty_object(store):
    ref = store.put(b"", "raw")
    assert ref == make_ref(b"", "raw") and store.get(ref) == b""


def test_put_is_idempotent(store, wav_bytes):
    first = store.put(wav_bytes, "wav")
    assert store.put(wav_bytes, "wav") == first
    assert store.put(wav_bytes, "WAV") == first
    assert len(_object_names(store)) == 1
    # same bytes, different container -> a different ref (the extension is part of it)
    other = store.put(wav_bytes, "raw")
    assert other != first and len(_object_names(store)) == 2


def test_concurrent_identical_puts_make_one_object(store, wav_bytes):
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        refs = set(pool.map(lambda _: store.put(wav_bytes, "wav"), range(8)))
    assert len(refs) == 1
    assert store.get(refs.pop()) == wav_bytes
    assert len(_object_names(store)) == 1


def test_missing_ref_is_media_not_found(store):
    ref = make_ref(b"never stored", "wav")
    assert not store.exists(ref)
    with pytest.raises(MediaNotFound):
        store.get(ref)
    with pytest.raises(KeyError):  # MediaNotFound is a KeyError, as callers expect
        store.get(ref)


@pytest.mark.parametrize("bad", [
    "", "sha256:../../etc/passwd", "sha256:" + "a" * 64 + ".w/v", "md5:abc.wav",
    "sha256:" + "A" * 64 + ".wav", "sha256:" + "a" * 63 + ".wav", "sha256:" + "a" * 64,
    "sha256:" + "a" * 64 + ".wav/../x", "../sha256:" + "a" * 64 + ".wav",
])
def test_invalid_ref_rejected(store, bad):
    with pytest.raises(InvalidRef):
        store.get(bad)
    with pytest.raises(InvalidRef):
        store.exists(bad)
    with pytest.raises(InvalidRef):
        store.set_alias("ok-name", bad)


@pytest.mark.parametrize("bad_ext", ["../x", "w/v", "", "toolongext", "wa v"])
def test_invalid_extension_rejected(store, bad_ext):
    with pytest.raises(InvalidRef):
        store.put(b"x", bad_ext)
    assert _object_names(store) == []


def test_aliases(store, wav_bytes, mp3_bytes):
    assert store.get_alias("tts-abc") is None
    ref = store.put(wav_bytes, "wav")
    store.set_alias("tts-abc", ref)
    assert store.get_alias("tts-abc") == ref
    ref2 = store.put(mp3_bytes, "mp3")
    store.set_alias("tts-abc", ref2)  # last write wins
    assert store.get_alias("tts-abc") == ref2
    store.set_alias("tts-other", ref)
    assert store.get_alias("tts-other") == ref
    for bad in ("../evil", ".hidden", "a/b", "", "x" * 201, "sp ace"):
        with pytest.raises(InvalidRef):
            store.set_alias(bad, ref)
        with pytest.raises(InvalidRef):
            store.get_alias(bad)
    assert len(_object_names(store)) == 2  # aliases are not blobs


def test_alias_to_deleted_blob_is_a_miss(store, wav_bytes):
    ref = store.put(wav_bytes, "wav")
    store.set_alias("tts-gone", ref)
    _delete_blob(store, ref)  # retention / lifecycle removed the blob
    assert store.get_alias("tts-gone") is None
    with pytest.raises(MediaNotFound):
        store.get(ref)
    assert store.put(wav_bytes, "wav") == ref  # and it can be stored again
    assert store.get_alias("tts-gone") == ref


# ---------------------------------------------------------------------------
# S3 specifics
# ---------------------------------------------------------------------------


def test_keys_live_under_prefix(s3_store, wav_bytes):
    ref = s3_store.put(wav_bytes, "wav")
    s3_store.set_alias("tts-k", ref)
    digest = hashlib.sha256(wav_bytes).hexdigest()
    assert s3_store.prefix.startswith("test/") and s3_store.prefix.endswith("/")
    resp = s3_store.client.list_objects_v2(Bucket=BUCKET, Prefix=s3_store.prefix)
    keys = sorted(o["Key"] for o in resp["Contents"])
    assert keys == [f"{s3_store.prefix}aliases/tts-k",
                    f"{s3_store.prefix}objects/{digest[:2]}/{digest[2:4]}/{digest}.wav"]
    head = s3_store.client.head_object(Bucket=BUCKET, Key=s3_store.key(ref))
    assert head["ContentType"] == "audio/wav" and head["ContentLength"] == len(wav_bytes)
    assert head["Metadata"]["sha256"] == digest


def test_prefixes_isolate_stores(s3_store, s3_endpoint, wav_bytes):
    other = S3MediaStore(BUCKET, prefix="elsewhere-" + uuid.uuid4().hex[:8], endpoint_url=s3_endpoint)
    ref = s3_store.put(wav_bytes, "wav")
    assert not other.exists(ref)
    with pytest.raises(MediaNotFound):
        other.get(ref)


def test_no_prefix(s3_env, s3_endpoint):
    store = S3MediaStore(BUCKET, prefix="", endpoint_url=s3_endpoint)
    ref = store.put(uuid.uuid4().bytes, "raw")
    assert store.key(ref).startswith("objects/")
    store.client.delete_object(Bucket=BUCKET, Key=store.key(ref))


@pytest.mark.parametrize("bad", ["a//b", "../x", "a/./b"])
def test_bad_prefix_rejected(bad):
    with pytest.raises(ValueError):
        S3MediaStore(BUCKET, prefix=bad, client=object())


def test_corrupted_object_detected(s3_store, wav_bytes):
    ref = s3_store.put(wav_bytes, "wav")
    s3_store.client.put_object(Bucket=BUCKET, Key=s3_store.key(ref), Body=b"tampered")
    with pytest.raises(MediaIntegrityError):
        s3_store.get(ref)


def test_missing_bucket_is_an_error_not_a_miss(s3_env, s3_endpoint):
    store = S3MediaStore("no-such-bucket-" + uuid.uuid4().hex[:8], endpoint_url=s3_endpoint)
    with pytest.raises(ClientError):
        store.get(make_ref(b"x", "wav"))
    with pytest.raises(ClientError):
        store.put(b"x", "wav")
    with pytest.raises(ClientError):
        store.get_alias("tts-x")


def test_presigned_url_downloads(s3_store, mp3_bytes):
    ref = s3_store.put(mp3_bytes, "mp3")
    url = s3_store.presigned_url(ref, expires_in=60, filename="rec-1.mp3")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=60" in url
    assert FAKE_ENV["AWS_SECRET_ACCESS_KEY"] not in url
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == mp3_bytes
        assert 'filename="rec-1.mp3"' in resp.headers["Content-Disposition"]
    # (moto does not enforce SigV4 on presigned URLs, so tampering is not asserted here)
    with pytest.raises(ValueError):
        s3_store.presigned_url(ref, expires_in=0)
    with pytest.raises(ValueError):
        s3_store.presigned_url(ref, filename='x"; evil=1')


def test_get_media_store_selects_backend(s3_env, monkeypatch, tmp_path):
    previous = get_media_store.__globals__["_default"]
    try:
        set_media_store(None)
        monkeypatch.setenv("CANARY_MEDIA_STORE", "s3")
        store = get_media_store()
        assert isinstance(store, S3MediaStore)
        assert store.bucket == BUCKET and store.prefix == os.environ["CANARY_S3_PREFIX"]
        assert store.endpoint_url == os.environ["CANARY_S3_ENDPOINT_URL"]
        store.ensure_bucket()
        ref = store.put(b"via get_media_store", "txt")
        assert get_media_store() is store and store.get(ref) == b"via get_media_store"

        set_media_store(None)
        monkeypatch.delenv("CANARY_MEDIA_STORE")
        monkeypatch.setenv("CANARY_MEDIA_DIR", str(tmp_path / "local"))
        assert isinstance(get_media_store(), LocalMediaStore)  # default unchanged

        set_media_store(None)
        monkeypatch.setenv("CANARY_MEDIA_STORE", "gcs")
        with pytest.raises(ValueError):
            get_media_store()

        set_media_store(None)
        monkeypatch.setenv("CANARY_MEDIA_STORE", "s3")
        monkeypatch.delenv("CANARY_S3_BUCKET")
        with pytest.raises(ValueError, match="CANARY_S3_BUCKET"):
            get_media_store()
    finally:
        set_media_store(previous)


def test_secrets_never_logged_or_shown(s3_store, wav_bytes, caplog):
    secret = FAKE_ENV["AWS_SECRET_ACCESS_KEY"]
    with caplog.at_level(logging.DEBUG):
        ref = s3_store.put(wav_bytes, "wav")
        s3_store.get(ref)
        s3_store.set_alias("tts-log", ref)
        s3_store.get_alias("tts-log")
        with pytest.raises(MediaNotFound):
            s3_store.get(make_ref(b"absent", "wav"))
    assert secret not in caplog.text
    assert secret not in repr(s3_store)
    assert FAKE_ENV["AWS_ACCESS_KEY_ID"] not in repr(s3_store)
    redacted = S3MediaStore(BUCKET, endpoint_url="http://user:pw@127.0.0.1:9/", client=object())
    assert "pw" not in repr(redacted) and "user" not in repr(redacted)


async def test_works_through_run_blocking(store, wav_bytes):
    """Callers do media I/O off the event loop; the store must be usable from the pool threads."""
    import asyncio

    refs = await asyncio.gather(*(audio.run_blocking(store.put, wav_bytes + bytes([i]), "wav") for i in range(4)))
    datas = await asyncio.gather(*(audio.run_blocking(store.get, r) for r in refs))
    assert [d[-1] for d in datas] == [0, 1, 2, 3] and len(set(refs)) == 4


def test_put_file_streams_a_file_in_and_removes_it(store, tmp_path, wav_bytes):
    """``put_file`` (a finished recording from the spool area): same ref as ``put``, file gone."""
    from services.common.media_store import put_file, spool_dir

    spool = spool_dir(store)
    spool.mkdir(parents=True, exist_ok=True)
    big = os.urandom(3 * 1024 * 1024)
    for data in (wav_bytes, big):
        path = spool / f".test-{uuid.uuid4().hex}.wav"
        path.write_bytes(data)
        ref = put_file(store, path, "wav")
        assert ref == make_ref(data, "wav") and store.get(ref) == data
        assert not path.exists()
    again = spool / f".test-{uuid.uuid4().hex}.wav"
    again.write_bytes(wav_bytes)
    assert put_file(store, again, "wav") == make_ref(wav_bytes, "wav") and not again.exists()  # already stored
