import json

import pytest

import canary
from canary import Canary, WebhookVerificationError
from canary import webhooks


def test_shared_vectors(vectors):
    assert len(vectors["cases"]) >= 10
    for case in vectors["cases"]:
        args = (case["payload"], case["header"], case["secret"], case["tolerance"])
        if case["valid"]:
            event = webhooks.verify(*args, now=case["now"])
            assert event == json.loads(case["payload"]), case["name"]
            # bytes payload works the same
            webhooks.verify(case["payload"].encode("utf-8"), *args[1:], now=case["now"])
        else:
            with pytest.raises(WebhookVerificationError) as err:
                webhooks.verify(*args, now=case["now"])
            assert err.value.code == case["error"], case["name"]


def test_reachable_from_module_and_client(vectors):
    case = vectors["cases"][0]
    kw = dict(tolerance=case["tolerance"], now=case["now"])
    assert canary.webhooks.verify(case["payload"], case["header"], case["secret"], **kw)["digits"] == "1234"
    client = Canary("sk_test_x", base_url="http://127.0.0.1:9")
    assert client.webhooks.verify(case["payload"], case["header"], case["secret"], **kw)["type"] == "gather.completed"


def test_default_tolerance_uses_the_clock():
    body = b'{"type":"call.completed"}'
    header = webhooks.generate_header(body, "whsec_x")
    assert webhooks.verify(body, header, "whsec_x") == {"type": "call.completed"}
    old = webhooks.generate_header(body, "whsec_x", timestamp=1_000_000_000)
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(body, old, "whsec_x")
    assert webhooks.verify(body, old, "whsec_x", tolerance=None) == {"type": "call.completed"}


def test_missing_secret_is_an_error():
    with pytest.raises(WebhookVerificationError):
        webhooks.verify("{}", "t=1,v1=00", "")
