"""W3C trace context: parsing and formatting traceparent, continuing a trace through the
envelope, the log binding and the OpenTelemetry spans (an in-memory exporter, in-process)."""

from __future__ import annotations

import uuid

import httpx
import jsonschema
import orjson
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from events import decode, encode, new_envelope, trace
from events.trace import TraceContext
from services.common import tracing
from services.ops import schemas

# The spec's own example.
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_parse_the_spec_example_and_format_it_back():
    ctx = trace.parse(TP)
    assert ctx == TraceContext(TRACE_ID, "00f067aa0ba902b7", 1)
    assert ctx.sampled and ctx.header == TP
    assert trace.parse(TP.encode()) == ctx  # a header's raw bytes


@pytest.mark.parametrize("value, why", [
    (None, "absent"),
    (42, "not a string"),
    ("", "empty"),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", "no flags"),
    ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "upper case hex"),
    ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "all-zero trace id"),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "all-zero parent id"),
    ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version ff is invalid"),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "version 00 is exactly 55 characters"),
    ("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01extra", "a later version's extra fields follow a dash"),
    ("00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", "ids of the wrong lengths"),
    ("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", "not dash-separated"),
    ("0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version not hex"),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz", "flags not hex"),
    (b"\xff\xfe", "bytes that are not ASCII"),
    ("00-" + "a" * 600, "absurdly long"),
])
def test_invalid_traceparents_are_refused(value, why):
    assert trace.parse(value) is None, why


def test_what_a_receiver_accepts_beyond_version_00():
    assert trace.parse(f" \t{TP}\t ") == trace.parse(TP)  # optional whitespace around a header value
    later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds"
    assert trace.parse(later) == TraceContext(TRACE_ID, "00f067aa0ba902b7", 1)
    # Only the sampled flag is kept; what we send is always version 00.
    assert trace.parse(TP[:-2] + "03").flags == 1
    assert trace.parse(TP[:-2] + "00").sampled is False
    assert trace.parse(later).header == TP


@given(st.binary(max_size=80) | st.text(max_size=80))
def test_parse_never_raises(value):
    ctx = trace.parse(value)
    assert ctx is None or trace.parse(ctx.header) == ctx


def test_new_traces_are_random_and_valid():
    a, b = trace.new_trace(), trace.new_trace()
    assert a.trace_id != b.trace_id and a.span_id != b.span_id
    assert trace.parse(a.header) == a and a.sampled
    assert trace.new_trace(sampled=False).header.endswith("-00")


def _env(**kw):
    return new_envelope("call.ringing", "call_x", "acct_x", {}, **kw)


def test_a_handled_message_continues_its_trace_with_a_span_of_the_handler():
    env = _env(traceparent=TP)
    out = env.caused("call.answered", {})
    child = trace.parse(out.traceparent)
    assert child.trace_id == TRACE_ID and child.flags == 1
    assert child.span_id != "00f067aa0ba902b7"  # the handler's span is the parent of its outputs
    assert child == trace.handled(env)
    # Deterministic like the derived ids: re-handling re-emits the same bytes.
    assert env.caused("call.answered", {}).traceparent == out.traceparent
    assert env.caused("call.completed", {}).traceparent == out.traceparent  # one handling, one parent span
    # Another service handling the same message is another span in the same trace.
    assert trace.handled(env, by="webhooks").span_id != trace.handled(env, by="orchestrator").span_id
    # And the next hop again.
    grandchild = trace.parse(out.caused("play.requested", {}).traceparent)
    assert grandchild.trace_id == TRACE_ID and grandchild.span_id not in (child.span_id, "00f067aa0ba902b7")


def test_a_message_without_a_usable_traceparent_has_the_trace_of_its_correlation_id():
    root = _env()  # a call's first message written before traces (or by another producer)
    assert trace.of(root).trace_id == uuid.UUID(root.id).hex
    follow = root.caused("call.answered", {})
    assert follow.correlation_id == root.id
    assert trace.parse(follow.traceparent).trace_id == uuid.UUID(root.id).hex
    for bad in ("garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"):
        env = _env(traceparent=bad, correlation_id=root.id)
        assert trace.of(env).trace_id == uuid.UUID(root.id).hex  # ignored, never an error
        assert trace.parse(env.caused("call.answered", {}).traceparent).trace_id == uuid.UUID(root.id).hex


def test_the_envelope_carries_it_and_old_records_still_decode():
    env = _env(traceparent=TP)
    raw = encode(env)
    assert orjson.loads(raw)["traceparent"] == TP
    assert decode(raw) == env
    jsonschema.validate(orjson.loads(raw), schemas.ENVELOPE_SCHEMA)
    # Untraced: no key at all, the record's bytes are those of before.
    plain = _env()
    assert "traceparent" not in orjson.loads(encode(plain))
    jsonschema.validate(orjson.loads(encode(plain)), schemas.ENVELOPE_SCHEMA)
    old = {k: v for k, v in orjson.loads(encode(plain)).items()}
    assert decode(orjson.dumps(old)).traceparent is None
    # Not a string: ignored on decode, the record is still read.
    odd = decode(orjson.dumps({**old, "traceparent": 12}))
    assert odd.type == "call.ringing" and odd.traceparent is None


def test_handling_binds_the_trace_to_the_log_lines():
    env = _env(traceparent=TP, correlation_id=str(uuid.uuid4()))
    structlog.contextvars.clear_contextvars()
    with tracing.handling(env, "test handle") as ctx:
        bound = structlog.contextvars.get_contextvars()
        assert bound == {"trace_id": TRACE_ID, "correlation_id": env.correlation_id, "call_id": "call_x"}
        assert ctx == trace.handled(env)
    assert structlog.contextvars.get_contextvars() == {}


def test_no_span_is_made_while_export_is_off():
    assert not tracing.enabled()
    ctx = trace.new_trace()
    assert tracing.span("x", ctx, None) is tracing.span("y", ctx, ctx)  # one shared no-op context
    with tracing.span("x", ctx, None) as span:
        assert span is None


@pytest.fixture
def spans():
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracing.install(exporter, "unit")
    try:
        yield exporter
    finally:
        tracing.shutdown()
        trace.set_service("canary")


def test_spans_carry_the_trace_and_the_derived_ids(spans):
    env = _env(traceparent=TP)
    with tracing.handling(env, "unit handle") as ctx:
        out = env.caused("call.answered", {})
    (span,) = spans.get_finished_spans()
    assert span.name == "unit handle"
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert f"{span.context.span_id:016x}" == ctx.span_id == trace.parse(out.traceparent).span_id
    assert f"{span.parent.span_id:016x}" == "00f067aa0ba902b7" and span.parent.is_remote
    assert span.attributes["canary.event_type"] == "call.ringing"
    # A root span takes the trace id it is given, whatever context is current.
    root = trace.new_trace()
    with tracing.handling(env, "outer"):
        with tracing.span("root", root, None):
            pass
    named = {s.name: s for s in spans.get_finished_spans()}
    assert f"{named['root'].context.trace_id:032x}" == root.trace_id and named["root"].parent is None


def test_an_unsampled_trace_records_no_span(spans):
    env = _env(traceparent=TP[:-2] + "00")
    with tracing.handling(env, "unit handle"):
        pass
    assert spans.get_finished_spans() == ()
    assert trace.parse(env.caused("call.answered", {}).traceparent).flags == 0  # still propagated


def test_the_orchestrator_keeps_the_calls_trace_in_its_state():
    from services.orchestrator.state import CallState

    s = CallState.new("call_x", "acct_x")
    assert "traceparent" not in s.to_json()  # the stored layout of before
    t = CallState.from_json({**s.to_json(), "traceparent": TP})
    assert t.traceparent == TP and CallState.from_json(t.to_json()) == t


def test_webhook_attempts_send_the_calls_trace():
    from services.webhooks import sender

    parent = trace.parse(TP)
    first, second = (sender.attempt_trace(parent, "ev1", n) for n in (1, 2))
    assert first.trace_id == second.trace_id == TRACE_ID and first.span_id != second.span_id
    headers = sender.headers_for("whsec_x", b"{}", "ev1", "call.completed", 1, traceparent=first.header)
    assert trace.parse(headers["traceparent"]) == first
    assert "traceparent" not in sender.headers_for("whsec_x", b"{}", "ev1", "call.completed", 1)


async def _trace_app_client():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from services.api.trace_middleware import RequestTrace, current

    async def echo(request):
        ctx = current()
        return JSONResponse({"trace_id": ctx.trace_id, "span_id": ctx.span_id,
                             "log": structlog.contextvars.get_contextvars().get("trace_id")})

    app = Starlette(routes=[Route("/", echo, methods=["POST"])])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=RequestTrace(app)), base_url="http://t")


async def test_the_api_continues_a_valid_traceparent_and_returns_its_own_span():
    async with await _trace_app_client() as c:
        r = await c.post("/", headers={"traceparent": TP})
    assert r.status_code == 200
    got = trace.parse(r.headers["traceparent"])
    assert got.trace_id == TRACE_ID and got.span_id != "00f067aa0ba902b7"
    assert r.json() == {"trace_id": TRACE_ID, "span_id": got.span_id, "log": TRACE_ID}


@pytest.mark.parametrize("headers", [
    [("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7")],  # malformed
    [("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")],  # zero trace id
    [("traceparent", TP), ("traceparent", TP)],  # repeated: invalid
    [],  # none
])
async def test_the_api_starts_a_new_trace_on_a_malformed_or_missing_traceparent(headers):
    async with await _trace_app_client() as c:
        r = await c.post("/", headers=headers)
    assert r.status_code == 200  # never an error
    got = trace.parse(r.headers["traceparent"])
    assert got is not None and got.trace_id != TRACE_ID and got.sampled
    assert r.json()["trace_id"] == got.trace_id


def test_the_live_audio_carries_the_trace_to_the_speech_workers():
    """The gateway puts the call's trace on each audio chunk (a Kafka header: chunks are not
    envelopes); a speech gather's answer continues it."""
    from services.transcription.speech_gather import GatherStream, Job, SpeechGather

    assert trace.continued(None, "k") is None and trace.continued("junk", "k") is None
    header = trace.continued(TP.encode(), "gather/g1")
    assert trace.parse(header).trace_id == TRACE_ID and trace.parse(header).span_id != "00f067aa0ba902b7"
    s = GatherStream("call_x", "acct_x", "g1", traceparent=TP)
    env = SpeechGather.event(Job(s, b"\0" * 320, 0, 0.0), "yes", 0.9, None, None)
    assert trace.parse(env.traceparent).trace_id == TRACE_ID
    assert trace.parse(env.caused("gather.completed", {}).traceparent).trace_id == TRACE_ID


# --- tracestate (W3C Trace Context section 3.3): vendors' entries, passed on unchanged ---

TS = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"  # the spec's example


@pytest.mark.parametrize("value, expected", [
    (TS, TS),
    (TS.encode(), TS),  # a header's raw bytes
    (" rojo=00f067aa0ba902b7 ,\t, congo=t61rcWkgMzE\t", TS),  # spaces around members, an empty member
    ([b"rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE"], TS),  # a repeated header is one list
    ("fw529a3039@dt=x,tenant_1@sys-2=v a l u e", "fw529a3039@dt=x,tenant_1@sys-2=v a l u e"),
    ("a=" + "x" * 256, "a=" + "x" * 256),  # the longest value
    ("k=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~", "k=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~"),  # every allowed sign
    (",".join(f"k{i}=v" for i in range(32)), ",".join(f"k{i}=v" for i in range(32))),  # 32 members
])
def test_valid_tracestates_are_kept_normalised(value, expected):
    assert trace.parse_state(value) == expected


@pytest.mark.parametrize("value, why", [
    (None, "absent"),
    (7, "not a string"),
    ("", "empty"),
    (" , ,", "only empty members"),
    ("rojo", "no ="),
    ("rojo=", "an empty value"),
    ("Rojo=1", "upper case key"),
    ("1abc=1", "a simple key starts with a letter"),
    ("a" * 257 + "=1", "a key longer than 256"),
    ("ro jo=1", "a space in the key"),
    ("rojo=a,b", "a member without ="),
    ("rojo=a=b", "= in a value"),
    ("rojo=" + "x" * 257, "a value longer than 256"),
    ("rojo=caf\u00e9", "non-ASCII in a value"),
    ("rojo=a\x01b", "a control character in a value"),
    ("t@Sys=1", "upper case system id"),
    ("t@" + "s" * 15 + "=1", "a system id longer than 14"),
    ("@sys=1", "an empty tenant id"),
    ("t@1sys=1", "a system id starts with a letter"),
    ("rojo=1,congo=2,rojo=3", "a repeated key"),
    (",".join(f"k{i}=v" for i in range(33)), "33 members"),
    (",".join(f"k{i:02d}={'v' * 40}" for i in range(12)), "more than 512 characters"),
    (b"rojo=\xff", "bytes that are not ASCII"),
    ([TS, 3], "a repeated header with a value that is not text"),
    (["rojo=1", "rojo=2"], "a key repeated across headers"),
])
def test_invalid_tracestates_are_dropped(value, why):
    assert trace.parse_state(value) is None, why


@given(st.binary(max_size=120) | st.text(max_size=120))
def test_parse_state_never_raises(value):
    got = trace.parse_state(value)
    assert got is None or trace.parse_state(got) == got


def test_the_envelope_passes_tracestate_on_unchanged():
    env = _env(traceparent=TP, tracestate=TS)
    raw = encode(env)
    assert orjson.loads(raw)["tracestate"] == TS and decode(raw) == env
    jsonschema.validate(orjson.loads(raw), schemas.ENVELOPE_SCHEMA)
    assert "tracestate" not in orjson.loads(encode(_env(traceparent=TP)))  # none: no key, bytes of before
    assert trace.of(env) == TraceContext(TRACE_ID, "00f067aa0ba902b7", 1, TS)
    out = env.caused("call.answered", {})
    assert out.tracestate == TS and trace.parse(out.traceparent).span_id == trace.handled(env).span_id
    assert out.caused("play.requested", {}).tracestate == TS  # every hop
    # Only next to a valid traceparent; an invalid one is dropped, never an error.
    assert trace.of(_env(traceparent="junk", tracestate=TS)).state is None
    assert _env(traceparent="junk", tracestate=TS).caused("call.answered", {}).tracestate is None
    assert _env(traceparent=TP, tracestate="Bad=1").caused("call.answered", {}).tracestate is None
    assert decode(orjson.dumps({**orjson.loads(raw), "tracestate": ["x"]})).tracestate is None


def test_the_orchestrator_keeps_the_calls_tracestate_for_its_timers():
    from services.orchestrator.state import CallState

    s = CallState.new("call_x", "acct_x")
    assert "tracestate" not in s.to_json()
    t = CallState.from_json({**s.to_json(), "traceparent": TP, "tracestate": TS})
    assert t.tracestate == TS and CallState.from_json(t.to_json()) == t


def test_webhook_attempts_and_the_live_audio_carry_the_tracestate():
    from services.transcription.speech_gather import GatherStream, Job, SpeechGather
    from services.webhooks import sender

    first = sender.attempt_trace(trace.parse(TP).with_state(TS), "ev1", 1)
    headers = sender.headers_for("whsec_x", b"{}", "ev1", "call.completed", 1, traceparent=first.header,
                                 tracestate=first.state)
    assert headers["tracestate"] == TS and trace.parse(headers["traceparent"]).trace_id == TRACE_ID
    assert "tracestate" not in sender.headers_for("whsec_x", b"{}", "ev1", "call.completed", 1, traceparent=TP)
    assert trace.continued_state(TP.encode(), TS.encode()) == TS
    assert trace.continued_state(None, TS) is None and trace.continued_state("junk", TS) is None
    assert trace.continued_state(TP, "Bad=1") is None and trace.continued_state(TP, None) is None
    s = GatherStream("call_x", "acct_x", "g1", traceparent=TP, tracestate=TS)
    env = SpeechGather.event(Job(s, b"\0" * 320, 0, 0.0), "yes", 0.9, None, None)
    assert env.tracestate == TS and env.caused("gather.completed", {}).tracestate == TS


def test_exported_spans_carry_the_tracestate(spans):
    env = _env(traceparent=TP, tracestate=TS)
    with tracing.handling(env, "unit handle"):
        pass
    (span,) = spans.get_finished_spans()
    assert span.context.trace_state.to_header() == TS and span.parent.trace_state.to_header() == TS
    with tracing.handling(_env(traceparent=TP), "no state"):
        pass
    assert len(spans.get_finished_spans()[-1].context.trace_state) == 0


async def test_the_api_continues_the_tracestate_with_the_traceparent():
    async with await _trace_app_client() as c:
        r = await c.post("/", headers=[("traceparent", TP), ("tracestate", "rojo=00f067aa0ba902b7"),
                                       ("tracestate", " congo=t61rcWkgMzE")])
        assert r.status_code == 200 and r.headers["tracestate"] == TS
        assert trace.parse(r.headers["traceparent"]).trace_id == TRACE_ID
        for headers in ([("traceparent", TP), ("tracestate", "rojo=a,rojo=b")],  # invalid: dropped
                        [("traceparent", "junk"), ("tracestate", TS)],  # no valid traceparent: not read
                        [("tracestate", TS)]):
            r = await c.post("/", headers=headers)
            assert r.status_code == 200 and "tracestate" not in r.headers  # never an error
            assert trace.parse(r.headers["traceparent"]) is not None
