"""Service-wide secrets: the embedded development default is refused outside development,
and each secret is a list "new,old,..." (sign/seal with the first, verify/unseal with any).

With CANARY_URL_SECRET at its published default anyone could sign a recording link (one
valid for 31 years was forged); with CANARY_TRUNK_SECRET at its default the sealed trunk
passwords in Postgres were as good as plain text."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.api import signing
from services.common.signing import DEV_SECRET, InsecureSecretError, check_service_secrets
from services.lib import trunks
from services.lib.trunks import TrunkError

ROOT = Path(__file__).resolve().parents[2]
NEW, OLD = "n" * 40, "o" * 40


def _start_api(**env: str) -> subprocess.CompletedProcess:
    """`python -m services.api` as a deployment would start it (no CANARY_ENV: production)."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("CANARY_ENV", "CANARY_URL_SECRET", "CANARY_TRUNK_SECRET")}
    base.update(CANARY_API_PORT="1", CANARY_API_HOST="127.0.0.1", **env)  # never serves: port 1 needs root
    try:
        return subprocess.run([sys.executable, "-m", "services.api"], cwd=ROOT, env=base, capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("the API started (kept running) on default secrets") from exc


def test_the_api_refuses_to_start_on_the_default_secrets():
    r = _start_api()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "refusing to start" in r.stderr
    assert "CANARY_URL_SECRET" in r.stderr and "CANARY_TRUNK_SECRET" in r.stderr
    # One good secret is not enough: the message names the one that is still the default.
    r = _start_api(CANARY_URL_SECRET=NEW, CANARY_ENV="production")
    assert r.returncode == 2 and "CANARY_TRUNK_SECRET" in r.stderr and "CANARY_URL_SECRET" not in r.stderr
    # The default as an "old" key of a rotation list would still verify forged links.
    r = _start_api(CANARY_URL_SECRET=f"{NEW},{DEV_SECRET}", CANARY_TRUNK_SECRET=NEW)
    assert r.returncode == 2 and "CANARY_URL_SECRET" in r.stderr


@pytest.mark.parametrize("value,why", [("", "not set"), (DEV_SECRET, "development default"),
                                       ("short", "shorter than"), (f"{NEW}, ,{DEV_SECRET}", "development default")])
def test_unfit_secrets_are_named(monkeypatch, value, why):
    monkeypatch.setenv("CANARY_ENV", "production")
    monkeypatch.setenv("CANARY_URL_SECRET", NEW)
    monkeypatch.setenv("CANARY_TRUNK_SECRET", value)
    with pytest.raises(InsecureSecretError, match=f"CANARY_TRUNK_SECRET .*{why}"):
        check_service_secrets()


def test_production_with_real_secrets_and_development_pass(monkeypatch):
    monkeypatch.setenv("CANARY_ENV", "production")
    monkeypatch.setenv("CANARY_URL_SECRET", f"{NEW},{OLD}")
    monkeypatch.setenv("CANARY_TRUNK_SECRET", NEW)
    check_service_secrets()
    monkeypatch.delenv("CANARY_URL_SECRET")
    monkeypatch.delenv("CANARY_TRUNK_SECRET")
    monkeypatch.setenv("CANARY_ENV", "development")  # what `canary-voice run` and the tests set
    check_service_secrets()


def test_trunk_passwords_are_not_sealed_with_the_default_in_production(monkeypatch):
    monkeypatch.setenv("CANARY_ENV", "production")
    monkeypatch.delenv("CANARY_TRUNK_SECRET", raising=False)
    with pytest.raises(TrunkError, match="CANARY_TRUNK_SECRET") as exc:
        trunks.seal("pw")
    assert exc.value.code == "secret_insecure"
    blob = trunks.seal("pw", secret=DEV_SECRET)  # a password stored under the default earlier
    with pytest.raises(TrunkError, match="CANARY_TRUNK_SECRET"):
        trunks.unseal(blob)


def test_forged_long_lived_link_is_refused(monkeypatch):
    """The forged link: a signature made with the default secret, expiring in 31 years."""
    monkeypatch.setenv("CANARY_URL_SECRET", NEW)
    far = int(time.time()) + 31 * 365 * 86400
    assert not signing.verify("rec_1", "mp3", far, signing.signature("rec_1", "mp3", far, secret=DEV_SECRET))
    # Even our own signature does not make a link live longer than MAX_TTL.
    assert not signing.verify("rec_1", "mp3", far, signing.signature("rec_1", "mp3", far))


def test_url_secret_rotates(monkeypatch):
    exp = int(time.time()) + 600
    monkeypatch.setenv("CANARY_URL_SECRET", OLD)
    old_link = signing.signature("rec_1", "mp3", exp)
    monkeypatch.setenv("CANARY_URL_SECRET", f"{NEW},{OLD}")  # step 1 of a rotation: new first, old kept
    assert signing.verify("rec_1", "mp3", exp, old_link)  # links handed out before still work
    new_link = signing.signature("rec_1", "mp3", exp)
    assert new_link == signing.signature("rec_1", "mp3", exp, secret=NEW) != old_link  # signed with the first
    assert signing.verify("rec_1", "mp3", exp, new_link)
    assert "signature=" + new_link in signing.media_url("rec_1", "mp3", ttl=exp - int(time.time()))
    monkeypatch.setenv("CANARY_URL_SECRET", NEW)  # step 2: the old key dropped
    assert signing.verify("rec_1", "mp3", exp, new_link) and not signing.verify("rec_1", "mp3", exp, old_link)


def test_trunk_secret_rotates(monkeypatch):
    monkeypatch.setenv("CANARY_TRUNK_SECRET", OLD)
    sealed_before = trunks.seal("old-password")
    monkeypatch.setenv("CANARY_TRUNK_SECRET", f" {NEW} , {OLD} ")
    assert trunks.unseal(sealed_before) == "old-password"  # sealed with the old key, still opens
    sealed_now = trunks.seal("new-password")
    assert trunks.unseal(sealed_now, secret=NEW) == "new-password"  # sealed with the first key
    monkeypatch.setenv("CANARY_TRUNK_SECRET", NEW)
    assert trunks.unseal(sealed_now) == "new-password"
    with pytest.raises(TrunkError, match="another CANARY_TRUNK_SECRET"):
        trunks.unseal(sealed_before)
