"""Numbers, voices, recordings (signed media URLs), health."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.integration.api.conftest import DOCS_BODY

pytestmark = pytest.mark.integration


async def test_numbers_crud(client, acct):
    h = acct.headers
    lst = (await client.get("/v1/voice/numbers", headers=h)).json()
    assert [n["number"] for n in lst["data"]] == ["+15559876543"]
    r = await client.post("/v1/voice/numbers", headers=h, json={"number": "+1 (555) 000-1234"})
    assert r.status_code == 201 and r.json()["number"] == "+15550001234"
    assert set(r.json()) == {"number", "created_at", "verification", "voice_url", "flow_id", "webhook_url"}
    assert r.json()["verification"] == "verified"
    assert (await client.post("/v1/voice/numbers", headers=h, json={"number": "+15550001234"})).status_code == 409
    for bad, code in (({"number": "abc"}, "invalid_phone_number"), ({}, "missing_field"),
                      ({"number": "+15550001234", "x": 1}, "unknown_field")):
        r = await client.post("/v1/voice/numbers", headers=h, json=bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == code
    # a freshly verified number can be used at once (the API's cache is invalidated)
    assert (await client.post("/v1/voice/calls", headers=h, json={**DOCS_BODY, "from": "+15550001234"})
            ).status_code == 201
    assert (await client.delete("/v1/voice/numbers/%2B15550001234", headers=h)).status_code == 204
    r = await client.delete("/v1/voice/numbers/+15550001234", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "number_not_found"
    r = await client.post("/v1/voice/calls", headers=h, json={**DOCS_BODY, "from": "+15550001234"})
    assert r.status_code == 403


async def test_voices(client, acct):
    data = (await client.get("/v1/voice/voices", headers=acct.headers)).json()["data"]
    ids = {v["id"] for v in data}
    assert {"en-US-Neural2-F", "en-US-Neural2-D", "en-GB-Neural2-A", "es-ES-Neural2-A", "fr-FR-Neural2-A"} <= ids
    assert {"id", "language", "gender", "type"} <= set(data[0])
    fr = (await client.get("/v1/voice/voices", params={"language": "fr"}, headers=acct.headers)).json()["data"]
    assert fr and all(v["language"].startswith("fr-") for v in fr)


async def test_recording_shape_and_signed_download(client, acct, pg, tmp_path):
    from services.common.media_store import LocalMediaStore, get_media_store, set_media_store

    previous = get_media_store()
    store = LocalMediaStore(tmp_path)
    set_media_store(store)
    try:
        wav = b"RIFF....WAVEfmt fake-bytes"
        mp3 = b"ID3fake-mp3"
        wav_ref, mp3_ref = store.put(wav, "wav"), store.put(mp3, "mp3")
        call_id = (await client.post("/v1/voice/calls", headers=acct.headers, json=DOCS_BODY)).json()["id"]
        rec_id = "rec_" + call_id[5:]
        await pg.execute(
            "INSERT INTO projection.recordings (id, call_id, account_id, wav_ref, mp3_ref, duration_ms, size_bytes,"
            " sha256, channels, created_at) VALUES ($1, $2, $3, $4, $5, 45200, 11, '', 'dual', now())",
            rec_id, call_id, acct.id, wav_ref, mp3_ref)
        r = await client.get(f"/v1/voice/calls/{call_id}/recording", headers=acct.headers)
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"id", "call_id", "duration", "url", "transcription"}
        assert body["id"] == rec_id and body["call_id"] == call_id and body["duration"] == 45
        assert body["transcription"] is None
        await pg.execute(
            "INSERT INTO projection.transcriptions (recording_id, call_id, account_id, text, confidence, segments,"
            " created_at) VALUES ($1, $2, $3, 'Hello, this is a recorded message...', 0.95, '[]', now())",
            rec_id, call_id, acct.id)
        body = (await client.get(f"/v1/voice/calls/{call_id}/recording", headers=acct.headers)).json()
        assert body["transcription"] == {"text": "Hello, this is a recorded message...", "confidence": 0.95}

        u = urlsplit(body["url"])
        assert u.path == f"/v1/voice/recordings/{rec_id}/media" and "signature=" in u.query
        got = await client.get(f"{u.path}?{u.query}")  # no API key needed: the signature is the credential
        assert got.status_code == 200 and got.content == mp3 and got.headers["content-type"] == "audio/mpeg"
        from services.api import signing

        wav_url = urlsplit(signing.media_url(rec_id, "wav"))
        got = await client.get(f"{wav_url.path}?{wav_url.query}")
        assert got.status_code == 200 and got.content == wav
        tampered = u.query.replace("format=mp3", "format=wav")
        r = await client.get(f"{u.path}?{tampered}")
        assert r.status_code == 403 and r.json()["error"]["code"] == "invalid_signature"
        expired = signing.signature(rec_id, "mp3", 1000)
        r = await client.get(f"{u.path}?format=mp3&expires=1000&signature={expired}")
        assert r.status_code == 403
    finally:
        set_media_store(previous)


async def test_health_and_docs(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["postgres"] and r.json()["kafka"]
    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    assert "/v1/voice/calls" in doc["paths"] and "CallCreate" in doc["components"]["schemas"]
    assert (await client.get("/docs")).status_code == 200
