"""services.tts.audio_fetch against a local HTTP server (127.0.0.1 only)."""

import numpy as np
import pytest

from services.common import audio
from services.common.media_store import LocalMediaStore
from services.recording.encode import encode_mp3
from services.tts.audio_fetch import AudioFetchError, fetch_audio, sniff_format

from .conftest import slow_body


@pytest.fixture
def allow_local(monkeypatch):
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")


def _wav_16k_stereo(ms: int) -> bytes:
    t = audio.tone(500, ms, rate=16000)
    return audio.write_wav(audio.interleave(t, t), rate=16000, channels=2)


def test_sniffing_uses_bytes_not_names():
    assert sniff_format(_wav_16k_stereo(10)[:16]) == "wav"
    assert sniff_format(b"ID3\x04\x00" + bytes(11)) == "mp3"
    assert sniff_format(encode_mp3(audio.tone(440, 100), 1)[:16]) == "mp3"
    assert sniff_format(b"<html><body>") is None
    assert sniff_format(b"\xff\xff\xff\xff") is None  # sync bits but invalid layer/bitrate
    assert sniff_format(b"RIFF\x00\x00\x00\x00AVI ") is None


@pytest.mark.asyncio
async def test_fetch_wav_is_resampled_to_8k_mono(allow_local, http_server, tmp_path):
    http_server.routes["/prompt.mp3"] = (200, {"Content-Type": "audio/mpeg"}, _wav_16k_stereo(1500))
    store = LocalMediaStore(tmp_path)
    res = await fetch_audio(http_server.base + "/prompt.mp3", store=store)  # a WAV despite its name
    assert res.format == "wav" and res.duration_ms == 1500
    pcm, rate, ch = audio.read_wav(store.get(res.audio_ref))
    assert (rate, ch) == (8000, 1)
    spec = np.abs(np.fft.rfft(audio.pcm_to_array(pcm).astype(float)))
    assert abs(np.fft.rfftfreq(len(pcm) // 2, 1 / 8000)[np.argmax(spec)] - 500) < 3


@pytest.mark.asyncio
async def test_fetch_mp3_is_decoded(allow_local, http_server, tmp_path):
    mp3 = encode_mp3(audio.tone(700, 2000), 1)
    http_server.routes["/a"] = (200, {"Content-Type": "application/octet-stream"}, mp3)
    res = await fetch_audio(http_server.base + "/a", store=LocalMediaStore(tmp_path))
    assert res.format == "mp3" and abs(res.duration_ms - 2000) < 200


@pytest.mark.asyncio
@pytest.mark.parametrize("route,reason", [
    ((200, {}, b"<html>not audio</html>"), "unsupported_format"),
    ((404, {}, b""), "http_error"),
    ((200, {}, b"RIFF" + bytes(4) + b"WAVEjunkjunkjunk"), "decode_failed"),
])
async def test_fetch_failures(allow_local, http_server, tmp_path, route, reason):
    http_server.routes["/x.wav"] = route
    with pytest.raises(AudioFetchError) as info:
        await fetch_audio(http_server.base + "/x.wav", store=LocalMediaStore(tmp_path))
    assert info.value.reason == reason


@pytest.mark.asyncio
async def test_size_limit_declared_and_streamed(allow_local, http_server, tmp_path):
    big = _wav_16k_stereo(2000)
    http_server.routes["/big"] = (200, {}, big)

    def chunked(h):  # no Content-Length: only the streaming guard can stop it
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(big)

    http_server.routes["/stream"] = chunked
    for path in ("/big", "/stream"):
        with pytest.raises(AudioFetchError) as info:
            await fetch_audio(http_server.base + path, store=LocalMediaStore(tmp_path), max_bytes=10_000)
        assert info.value.reason == "too_large"


@pytest.mark.asyncio
async def test_time_limit(allow_local, http_server, tmp_path):
    http_server.routes["/slow"] = slow_body(3)
    with pytest.raises(AudioFetchError) as info:
        await fetch_audio(http_server.base + "/slow", store=LocalMediaStore(tmp_path), timeout_s=0.5)
    assert info.value.reason == "timeout"


@pytest.mark.asyncio
async def test_private_targets_refused_without_opt_out(monkeypatch, http_server, tmp_path):
    monkeypatch.delenv("CANARY_ALLOW_PRIVATE_URLS", raising=False)
    http_server.routes["/a"] = (200, {}, _wav_16k_stereo(100))
    port = http_server.server_address[1]
    for url in (http_server.base + "/a", f"http://localhost:{port}/a", "file:///etc/passwd"):
        with pytest.raises(AudioFetchError) as info:
            await fetch_audio(url, store=LocalMediaStore(tmp_path))
        assert info.value.reason == "url_not_allowed"
