"""Regenerate webhook_signatures.json (the vectors both SDKs' tests verify).

    python sdk/testdata/generate_webhook_vectors.py > sdk/testdata/webhook_signatures.json

Self-contained on purpose: the expected values follow from the documented scheme
`Canary-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.

Parsing rules every verifier follows (the "malformed" cases below pin them down):
a header longer than MAX_HEADER_LENGTH characters is malformed; `t` is 1 to 12 ASCII
digits; empty `v1=` entries are ignored; a `v1` value that is not the expected hex
(non-ASCII, wrong length ...) simply does not match. A malformed header is always the
verification error, never an exception of another kind.

`tolerance_cases` are tolerances a verifier must refuse (error `tolerance_invalid`)
rather than let them switch the replay check off: each is a number or one of the
strings "NaN", "Infinity", "-Infinity" (meaning that float; both JavaScript's Number()
and Python's float() read them).
"""

import hashlib
import hmac
import json

SECRET = "whsec_test_5f2b9c1e8a7d4e3f"
OTHER = "whsec_old_0000000000000000"
T = 1767225600  # 2026-01-01T00:00:00Z
BODY = '{"call_id":"call_abc123xyz","type":"gather.completed","digits":"1234","finished_on_key":"#"}'
MAX_HEADER_LENGTH = 8192
E_ACUTE = "\u00e9"
UNICODE = '{"call_id":"call_\u00e9\u00e8","type":"call.completed","text":"h\u00e9llo \u2603 \U0001f426"}'


def sig(secret, t, body):
    return hmac.new(secret.encode(), f"{t}.".encode() + body.encode("utf-8"), hashlib.sha256).hexdigest()


def case(name, *, header, body=BODY, secret=SECRET, now=T, tolerance=300, valid, error=None):
    return {"name": name, "secret": secret, "payload": body, "header": header, "now": now,
            "tolerance": tolerance, "valid": valid, "error": error}


good = f"t={T},v1={sig(SECRET, T, BODY)}"
cases = [
    case("valid", header=good, valid=True),
    case("valid at the edge of the tolerance (past)", header=good, now=T + 300, valid=True),
    case("valid at the edge of the tolerance (future)", header=good, now=T - 300, valid=True),
    case("valid with spaces after commas", header=f"t={T}, v1={sig(SECRET, T, BODY)}", valid=True),
    case("valid: second of two v1 signatures (secret rotation)",
         header=f"t={T},v1={sig(OTHER, T, BODY)},v1={sig(SECRET, T, BODY)}", valid=True),
    case("valid: unknown scheme ignored", header=f"t={T},v0=deadbeef,v1={sig(SECRET, T, BODY)}", valid=True),
    case("valid: non-ASCII payload signed as UTF-8", body=UNICODE,
         header=f"t={T},v1={sig(SECRET, T, UNICODE)}", valid=True),
    case("valid: empty JSON object", body="{}", header=f"t={T},v1={sig(SECRET, T, '{}')}", valid=True),
    case("expired: older than the tolerance", header=good, now=T + 301, valid=False,
         error="timestamp_out_of_tolerance"),
    case("expired: too far in the future", header=good, now=T - 301, valid=False,
         error="timestamp_out_of_tolerance"),
    case("expired with a custom tolerance", header=good, now=T + 61, tolerance=60, valid=False,
         error="timestamp_out_of_tolerance"),
    case("wrong secret", header=good, secret=OTHER, valid=False, error="signature_mismatch"),
    case("tampered body", header=good, body=BODY.replace("1234", "1235"), valid=False,
         error="signature_mismatch"),
    case("body re-serialized with spaces", header=good, body=json.dumps(json.loads(BODY)), valid=False,
         error="signature_mismatch"),
    case("timestamp swapped (replay with a fresh t)", header=f"t={T + 100},v1={sig(SECRET, T, BODY)}",
         now=T + 100, valid=False, error="signature_mismatch"),
    case("truncated signature", header=f"t={T},v1={sig(SECRET, T, BODY)[:-2]}", valid=False,
         error="signature_mismatch"),
    case("no v1 signature", header=f"t={T}", valid=False, error="signature_malformed"),
    case("only an unknown scheme", header=f"t={T},v0={sig(SECRET, T, BODY)}", valid=False,
         error="signature_malformed"),
    case("no timestamp", header=f"v1={sig(SECRET, T, BODY)}", valid=False, error="signature_malformed"),
    case("non-numeric timestamp", header=f"t=yesterday,v1={sig(SECRET, T, BODY)}", valid=False,
         error="signature_malformed"),
    case("empty header", header="", valid=False, error="signature_missing"),
    case("garbage header", header="not a signature", valid=False, error="signature_malformed"),
    # Malformed headers of every kind: always the verification error, never another exception.
    case("non-ASCII v1", header=f"t={T},v1=\u00e9", valid=False, error="signature_mismatch"),
    case("non-ASCII v1 as long as a signature in UTF-8", header=f"t={T},v1={E_ACUTE * 32}", valid=False,
         error="signature_mismatch"),
    case("non-ASCII v1 as long as a signature in characters", header=f"t={T},v1={E_ACUTE * 64}", valid=False,
         error="signature_mismatch"),
    case("valid: a non-ASCII v1 before the matching one",
         header=f"t={T},v1=\u2603\U0001f426,v1={sig(SECRET, T, BODY)}", valid=True),
    case("emoji in the header", header=f"t={T},\U0001f426=\U0001f426,v1={sig(SECRET, T, BODY)[:-1]}\u00e9",
         valid=False, error="signature_mismatch"),
    case("empty v1", header=f"t={T},v1=", valid=False, error="signature_malformed"),
    case("only empty v1 entries", header=f"t={T},v1=,v1= ,v1=", valid=False, error="signature_malformed"),
    case("valid: an empty v1 next to the matching one", header=f"t={T},v1=,v1={sig(SECRET, T, BODY)}",
         valid=True),
    case("many v1, none matching",
         header=f"t={T}," + ",".join(f"v1={sig(f'whsec_other_{i}', T, BODY)}" for i in range(100)),
         valid=False, error="signature_mismatch"),
    case("valid: many v1, the last one matching",
         header=f"t={T}," + ",".join(f"v1={sig(f'whsec_other_{i}', T, BODY)}" for i in range(100))
         + f",v1={sig(SECRET, T, BODY)}", valid=True),
    case("huge header (longer than MAX_HEADER_LENGTH), even with a matching v1",
         header=f"t={T},v1={sig(SECRET, T, BODY)}," + "x" * MAX_HEADER_LENGTH, valid=False,
         error="signature_malformed"),
    case("header of commas only", header="," * 50, valid=False, error="signature_malformed"),
    case("empty timestamp", header=f"t=,v1={sig(SECRET, T, BODY)}", valid=False, error="signature_malformed"),
    case("negative timestamp", header=f"t=-{T},v1={sig(SECRET, -T, BODY)}", tolerance=None, valid=False,
         error="signature_malformed"),
    case("timestamp with a plus sign", header=f"t=+{T},v1={sig(SECRET, T, BODY)}", valid=False,
         error="signature_malformed"),
    case("timestamp with underscores", header=f"t={T:_},v1={sig(SECRET, T, BODY)}", valid=False,
         error="signature_malformed"),
    case("timestamp in non-ASCII digits",
         header="t=" + "".join(chr(0x660 + int(d)) for d in str(T)) + f",v1={sig(SECRET, T, BODY)}",
         valid=False, error="signature_malformed"),
    case("timestamp with a fraction", header=f"t={T}.0,v1={sig(SECRET, T, BODY)}", valid=False,
         error="signature_malformed"),
    case("timestamp of 13 digits", header=f"t={T:013d},v1={sig(SECRET, T, BODY)}", valid=False,
         error="signature_malformed"),
    case("timestamp of 400 digits", header=f"t={'9' * 400},v1={sig(SECRET, T, BODY)}", tolerance=None,
         valid=False, error="signature_malformed"),
]

# Tolerances that must be refused, not read as "no replay check": the header is valid
# but a day old, so a verifier that skipped the age check would accept it.
tolerance_cases = [
    {"name": name, "secret": SECRET, "payload": BODY, "header": good, "now": T + 86400,
     "tolerance": tolerance, "valid": False, "error": "tolerance_invalid"}
    for name, tolerance in [("NaN", "NaN"), ("infinite", "Infinity"), ("minus infinity", "-Infinity"),
                            ("negative", -1), ("negative fraction", -0.5)]
]

print(json.dumps({
    "scheme": "Canary-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, '<t>.<raw body>')>",
    "max_header_length": MAX_HEADER_LENGTH,
    "cases": cases,
    "tolerance_cases": tolerance_cases,
}, indent=2, ensure_ascii=False))
