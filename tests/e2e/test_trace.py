"""Following one call's trace across the real stack (docs/architecture.md, "Following a call").

The API runs in-process (its spans go to an in-memory exporter); the orchestrator, gateway,
TTS worker, projector and webhooks run as processes with span export to the console (one
JSON span a line in their logs). A call POSTed with a client's `traceparent` and `tracestate`
must keep that trace id in the API's answer, on every event of the call on Kafka (the parent
span changing hop by hop, the tracestate unchanged), in the webhooks the app receives (both
headers), in every service's spans (the projector's too) and log lines, and in the call's
timeline (`GET /v1/voice/calls/{id}/events`).
"""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from aiohttp import web

from events import trace
from tests.api_app import running_app
from tests.e2e.conftest import CORE, _voice_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def traced(request, stack, tmp_path_factory):
    from services.common import db

    await db.migrate()  # the services write the delivery's trace (migrations 0016, 0019)
    env = {"CANARY_OTEL_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "200"}
    async for vs in _voice_stack(request, stack, tmp_path_factory, CORE, env=env):
        yield vs


class App:
    """The customer's app: answers the flow's webhook step, records every request."""

    def __init__(self):
        self.requests: list[tuple[str, dict[str, str], dict]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.headers), await request.json()))
        if request.path == "/ivr":
            return web.json_response({"steps": [{"kind": "say", "text": "Traced."}]})
        return web.Response(text="ok")

    async def __aenter__(self) -> "App":
        app = web.Application()
        app.router.add_post("/{path:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()

    def status(self, call_id: str, type_: str) -> list[dict[str, str]]:
        return [h for p, h, b in self.requests if p == "/status" and b.get("call_id") == call_id
                and b.get("type") == type_]


def _console_spans(vs, module: str, trace_id: str) -> list[dict]:
    """The spans a service process exported (one JSON object a line in its log) in this trace."""
    out = []
    for line in (vs.logdir / f"{module}.log").read_bytes().splitlines():
        if not line.startswith(b"{") or b'"context"' not in line:
            continue
        try:
            span = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if span.get("context", {}).get("trace_id") == "0x" + trace_id:
            out.append(span)
    return out


def _log_lines(vs, module: str, **match) -> list[dict]:
    out = []
    for line in (vs.logdir / f"{module}.log").read_bytes().splitlines():
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and all(obj.get(k) == v for k, v in match.items()):
            out.append(obj)
    return out


async def _eventually(check, timeout: float = 30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.2)


async def test_one_trace_from_the_post_to_the_webhooks(traced, monkeypatch):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from services.api import store
    from services.common import accounts, db, tracing

    vs = traced
    conn = await db.connect()
    try:
        _, key = await accounts.create_key(conn, vs.account, "test")
    finally:
        await conn.close()
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")  # the app below is on loopback
    spans = InMemorySpanExporter()
    tracing.install(spans, "api")
    client_trace = trace.new_trace()
    state = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"  # a vendor's entries: passed on unchanged
    # The API's timeline reads this stack's projection (its projector writes to its own schema).
    monkeypatch.setattr(store, "GET_EVENTS", store.GET_EVENTS.replace(f"{store.P}.", f"{vs.schema}."))
    try:
        async with App() as app, running_app(vs.prefix, monkeypatch) as api, httpx.AsyncClient(
                transport=httpx.ASGITransport(app=api), base_url="http://api.test",
                headers={"Authorization": f"Bearer {key}"}) as c:
            flow = {"start": "ask", "steps": {"ask": {"kind": "webhook", "url": f"{app.url}/ivr", "next": "bye"},
                                              "bye": {"kind": "hangup"}}}
            body = {"to": "+15551234567", "from": "+15559876543", "flow": flow, "webhook_url": f"{app.url}/status"}
            r = await c.post("/v1/voice/calls", json=body,
                             headers={"traceparent": client_trace.header, "tracestate": f" {state} ,"})
            assert r.status_code == 201, r.text
            call_id = r.json()["id"]

            # The answer continues the client's trace with the API's own span, and its tracestate.
            answered = trace.parse(r.headers["traceparent"])
            assert answered.trace_id == client_trace.trace_id
            assert answered.span_id != client_trace.span_id
            assert r.headers["tracestate"] == state

            # A malformed traceparent is ignored: the call is accepted on a new trace.
            bad = await c.post("/v1/voice/calls", json={**body, "flow": None, "tts": {"text": "Untraced."}},
                               headers={"traceparent": "00-not-a-trace-01"})
            assert bad.status_code == 201, bad.text
            fresh = trace.parse(bad.headers["traceparent"])
            assert fresh is not None and fresh.trace_id != client_trace.trace_id

            end = await vs.wait(call_id, "terminal", timeout=90)
            assert end.type == "call.completed", vs.types(call_id)
            await vs.wait(bad.json()["id"], "terminal", timeout=90)
            completed = await _eventually(lambda: _one(app.status(call_id, "call.completed")), timeout=60)

            # The call's timeline shows each event's trace id: the one the POST answered with.
            async def timeline():
                while True:
                    got = await c.get(f"/v1/voice/calls/{call_id}/events")
                    assert got.status_code == 200, got.text
                    items = got.json()["data"]
                    if any(e["type"] == "call.completed" for e in items):
                        return items
                    await asyncio.sleep(0.2)

            items = await asyncio.wait_for(timeline(), 60)
            untraced_items = (await c.get(f"/v1/voice/calls/{bad.json()['id']}/events")).json()["data"]
        api_spans = spans.get_finished_spans()
    finally:
        tracing.shutdown()
        trace.set_service("canary")

    # Every event of the call on Kafka carries the trace; the parent span changes hop by hop.
    events = vs.events[call_id]
    contexts = [trace.parse(e.traceparent) for e in events]
    assert all(ctx is not None and ctx.trace_id == client_trace.trace_id for ctx in contexts), \
        [(e.type, e.traceparent) for e in events]
    parents = {ctx.span_id for ctx in contexts}
    assert len(parents) >= 3 and answered.span_id not in parents and client_trace.span_id not in parents
    assert {e.tracestate for e in events} == {state}, [(e.type, e.tracestate) for e in events]
    assert {e.tracestate for e in vs.events[bad.json()["id"]]} == {None}
    assert len(items) >= 5 and {e["trace_id"] for e in items} == {answered.trace_id}
    assert {e["trace_id"] for e in untraced_items} == {fresh.trace_id}
    by_type = {e.type: e for e in events}
    # Who emitted what: the orchestrator handling the PlaceCall (whose span is the API's), the
    # gateway handling dial.requested, the webhooks service answering the flow's webhook step.
    queued, dial = by_type["call.queued"], by_type["dial.requested"]
    assert trace.parse(queued.traceparent).span_id == trace.derive_span_id(f"orchestrator/{queued.causation_id}")
    assert trace.parse(by_type["call.ringing"].traceparent).span_id == trace.derive_span_id(f"gateway/{dial.id}")
    answer = by_type["flow.webhook.answered"]
    assert trace.parse(answer.traceparent).span_id == trace.derive_span_id(f"webhooks/{answer.causation_id}")
    # The untraced POST's call is on its own, new trace.
    assert {trace.parse(e.traceparent).trace_id for e in vs.events[bad.json()["id"]]} == {fresh.trace_id}

    # The app's requests carry the trace: the status webhook and the flow's webhook step.
    sent = trace.parse(completed["traceparent"])
    assert sent.trace_id == client_trace.trace_id and sent.span_id not in parents
    assert completed["tracestate"] == state
    ivr = [h for p, h, b in app.requests if p == "/ivr" and b["call_id"] == call_id]
    assert ivr and trace.parse(ivr[0]["traceparent"]).trace_id == client_trace.trace_id
    assert ivr[0]["tracestate"] == state
    untraced_status = app.status(bad.json()["id"], "call.completed")
    assert untraced_status and "tracestate" not in {k.lower() for k in untraced_status[0]}

    # Spans: the API's (in-process) and each service's (console export) share the trace id and
    # link up: the API's span is the client's child, the PlaceCall's decision the API's, the
    # dial the orchestrator's, the webhook delivery the span whose id the app received.
    (api_span,) = [s for s in api_spans if f"{s.context.trace_id:032x}" == client_trace.trace_id]
    assert api_span.name == "api POST /v1/voice/calls"
    assert f"{api_span.context.span_id:016x}" == answered.span_id
    assert f"{api_span.parent.span_id:016x}" == client_trace.span_id

    def exported():
        orch = _console_spans(vs, "services.orchestrator.service", client_trace.trace_id)
        gw = _console_spans(vs, "services.telephony.gateway", client_trace.trace_id)
        wh = _console_spans(vs, "services.webhooks", client_trace.trace_id)
        proj = _console_spans(vs, "services.projector.service", client_trace.trace_id)
        assert orch and gw and wh and proj, (len(orch), len(gw), len(wh), len(proj))
        # The projector's batches continue the call's trace: each child of one of its events.
        assert {s["name"] for s in proj} == {"projector project"}
        assert {s["parent_id"][2:] for s in proj} <= parents | {answered.span_id}
        assert any(s["name"] == "orchestrator decide" and s["parent_id"] == "0x" + answered.span_id for s in orch)
        dials = [s for s in gw if s["name"] == "gateway dial"]
        assert [s["parent_id"] for s in dials] == ["0x" + trace.parse(dial.traceparent).span_id]
        assert any(s["name"] == "webhook delivery" and s["context"]["span_id"] == "0x" + sent.span_id for s in wh)
        return orch + gw + wh + proj

    every = await _eventually(exported, timeout=30)
    assert {s["context"]["trace_id"] for s in every} == {"0x" + client_trace.trace_id}
    # Every exported span's context carries the client's tracestate (the SDK's repr of it).
    assert {s["context"]["trace_state"] for s in every} == {
        "['{key=rojo, value=00f067aa0ba902b7}', '{key=congo, value=t61rcWkgMzE}']"}

    # Log lines written while handling the call's records carry its trace id and correlation id.
    lines = _log_lines(vs, "services.webhooks", event="webhook attempt", call_id=call_id)
    assert lines and all(line["trace_id"] == client_trace.trace_id for line in lines)
    (dialed,) = _log_lines(vs, "services.telephony.gateway", event="call dialed", call_id=call_id)
    assert dialed["trace_id"] == client_trace.trace_id and dialed["correlation_id"] == queued.correlation_id


def _one(found: list):
    assert found, "not yet"
    return found[0]

