"""Regenerate webhook_signatures.json (the vectors both SDKs' tests verify).

    python sdk/testdata/generate_webhook_vectors.py > sdk/testdata/webhook_signatures.json

Self-contained on purpose: the expected values follow from the documented scheme
`Canary-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
"""

import hashlib
import hmac
import json

SECRET = "whsec_test_5f2b9c1e8a7d4e3f"
OTHER = "whsec_old_0000000000000000"
T = 1767225600  # 2026-01-01T00:00:00Z
BODY = '{"call_id":"call_abc123xyz","type":"gather.completed","digits":"1234","finished_on_key":"#"}'
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
]

print(json.dumps({
    "scheme": "Canary-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, '<t>.<raw body>')>",
    "cases": cases,
}, indent=2, ensure_ascii=False))
