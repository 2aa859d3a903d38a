"""The shared signature vectors (sdk/testdata) agree with the signer the service uses."""

import json
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[3] / "sdk" / "testdata" / "webhook_signatures.json"


def test_vectors_match_the_service_signer():
    signing = pytest.importorskip("services.common.signing")
    cases = json.loads(VECTORS.read_text(encoding="utf-8"))["cases"]
    for c in cases:
        ok = signing.is_valid(c["secret"], c["payload"].encode("utf-8"), c["header"],
                              tolerance=c["tolerance"], now=c["now"])
        assert ok == c["valid"], c["name"]
    valid = next(c for c in cases if c["name"] == "valid")
    assert signing.sign(valid["secret"], valid["payload"].encode(), timestamp=valid["now"]) == valid["header"]
