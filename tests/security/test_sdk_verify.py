"""Webhook signature verification refuses every malformed input with its own error.

Checked on the shared vectors (sdk/testdata/webhook_signatures.json, which the Node
SDK's tests read too) for the Python SDK (`canary.webhooks.verify`) and the service's
own verifier (`services.common.signing`): a malformed `Canary-Signature` header, a
non-ASCII `v1` value included, is a `WebhookVerificationError` / `SignatureError`
(False from `is_valid`), never a TypeError a receiver would turn into a 500; and a
tolerance that is not a finite number >= 0 (NaN, infinity, negative) is refused
instead of switching the replay check off.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from canary import WebhookVerificationError, webhooks
from services.common import signing

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "sdk" / "testdata" / "webhook_signatures.json")
                     .read_text(encoding="utf-8"))
CASES = VECTORS["cases"]
TOLERANCE_CASES = VECTORS["tolerance_cases"]
GOOD = next(c for c in CASES if c["name"] == "valid")


def _tolerance(value):
    """The vectors spell non-finite floats as "NaN" / "Infinity" / "-Infinity"."""
    return float(value) if isinstance(value, str) else value


def _sdk(case, tolerance=None):
    tol = case["tolerance"] if tolerance is None else tolerance
    return webhooks.verify(case["payload"], case["header"], case["secret"], tol, now=case["now"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_sdk_vectors(case):
    if case["valid"]:
        assert _sdk(case) == json.loads(case["payload"])
        # bytes payload and bytes header (an ASGI server's raw header) work the same
        assert webhooks.verify(case["payload"].encode(), case["header"].encode("utf-8"), case["secret"],
                               case["tolerance"], now=case["now"]) == json.loads(case["payload"])
    else:
        with pytest.raises(WebhookVerificationError) as err:
            _sdk(case)
        assert err.value.code == case["error"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_service_verifier_vectors(case):
    ok = signing.is_valid(case["secret"], case["payload"].encode("utf-8"), case["header"],
                          tolerance=case["tolerance"], now=case["now"])
    assert ok == case["valid"]
    if not case["valid"]:
        with pytest.raises(signing.SignatureError):
            signing.verify(case["secret"], case["payload"].encode("utf-8"), case["header"],
                           tolerance=case["tolerance"], now=case["now"])


@pytest.mark.parametrize("case", TOLERANCE_CASES, ids=[c["name"] for c in TOLERANCE_CASES])
def test_invalid_tolerance_is_refused_not_a_disabled_replay_check(case):
    tolerance = _tolerance(case["tolerance"])
    assert not (isinstance(tolerance, float) and math.isfinite(tolerance)) or tolerance < 0
    with pytest.raises(WebhookVerificationError) as err:
        _sdk(case, tolerance)
    assert err.value.code == case["error"] == "tolerance_invalid"
    assert "tolerance" in str(err.value)
    assert not signing.is_valid(case["secret"], case["payload"].encode(), case["header"],
                                tolerance=tolerance, now=case["now"])
    with pytest.raises(signing.SignatureError, match="tolerance"):
        signing.verify(case["secret"], case["payload"].encode(), case["header"], tolerance=tolerance,
                       now=case["now"])


@pytest.mark.parametrize("tolerance", ["300", True, [300]])
def test_tolerance_of_another_type_is_refused(tolerance):
    with pytest.raises(WebhookVerificationError) as err:
        _sdk(GOOD, tolerance)
    assert err.value.code == "tolerance_invalid"


def test_tolerance_zero_and_fractions_still_work():
    assert _sdk(GOOD, 0) == json.loads(GOOD["payload"])
    assert webhooks.verify(GOOD["payload"], GOOD["header"], GOOD["secret"], 0.5, now=GOOD["now"] + 0.4)
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(GOOD["payload"], GOOD["header"], GOOD["secret"], 0.5, now=GOOD["now"] + 0.6)
    assert signing.is_valid(GOOD["secret"], GOOD["payload"].encode(), GOOD["header"], tolerance=0, now=GOOD["now"])


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf])
def test_a_non_finite_clock_is_refused(now):
    with pytest.raises(WebhookVerificationError) as err:
        webhooks.verify(GOOD["payload"], GOOD["header"], GOOD["secret"], 300, now=now)
    assert err.value.code == "now_invalid"
    assert not signing.is_valid(GOOD["secret"], GOOD["payload"].encode(), GOOD["header"], now=now)


@pytest.mark.parametrize("header", [None, 12, b"\xff\xfe", bytearray(b"t=1"), ["t=1", "v1=00"], object()])
def test_headers_of_other_types_are_refused(header):
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(GOOD["payload"], header, GOOD["secret"], 300, now=GOOD["now"])
    assert not signing.is_valid(GOOD["secret"], GOOD["payload"].encode(), header, now=GOOD["now"])


_PARTS = st.one_of(
    st.text(max_size=80),
    st.builds(lambda v: f"v1={v}", st.text(max_size=70)),
    st.builds(lambda v: f"t={v}", st.one_of(st.text(max_size=20), st.integers().map(str))),
    st.just(f"v1={GOOD['header'].split('v1=')[1]}"),
    st.just(f"t={GOOD['now']}"),
)
_HEADERS = st.one_of(st.text(), st.lists(_PARTS, max_size=12).map(",".join),
                     st.lists(_PARTS, max_size=12).map(", ".join))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(header=_HEADERS)
def test_any_header_is_a_result_or_the_verification_error(header):
    try:
        _sdk({**GOOD, "header": header})
    except WebhookVerificationError:
        pass
    signing.is_valid(GOOD["secret"], GOOD["payload"].encode(), header, now=GOOD["now"])


def test_a_huge_header_is_refused_quickly():
    import time

    header = GOOD["header"] + "," + ",".join(["v1=" + "0" * 64] * 200_000)  # ~13 MB
    start = time.perf_counter()
    with pytest.raises(WebhookVerificationError) as err:
        _sdk({**GOOD, "header": header})
    assert err.value.code == "signature_malformed"
    assert not signing.is_valid(GOOD["secret"], GOOD["payload"].encode(), header, now=GOOD["now"])
    assert time.perf_counter() - start < 1.0
