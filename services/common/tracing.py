"""Following a call across the services: log binding and optional OpenTelemetry spans.

The trace context itself travels in the envelope (``events/trace.py``). Here:

* :func:`handling` is what a service wraps around the handling of one message: the log
  lines written meanwhile carry ``trace_id``, ``correlation_id`` and ``call_id``
  (structlog contextvars), and, with export on, a span named for the work (``orchestrator
  decide``, ``gateway dial``, ...) is recorded with the message's trace id, its parent the
  message's span and its own id the derived one the outputs carry as their parent
  (``events.trace.handled``), so exported spans and the log's records form one tree.
* :func:`span` records a span with a given parent and id (the API's request, a webhook
  attempt).
* :func:`batch` records, around the handling of a batch of messages of many calls at once
  (the projector's), one span per trace in it.
* :func:`setup` turns export on when ``CANARY_OTEL_EXPORTER`` (or the standard
  ``OTEL_TRACES_EXPORTER``) names exporters. Off (the default) OpenTelemetry is not even
  imported and :func:`span` returns one shared no-op context: no span object is made.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Any, Iterator

import structlog

from events import trace as tc
from events.trace import TraceContext
from services.common.config import settings

_tracer: Any = None  # an opentelemetry Tracer while export is on
_provider: Any = None
_NULL = contextlib.nullcontext()
# The ids the next span takes (the id generator reads them): ours are derived, not random.
_next_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("canary_next_span_ids",
                                                                                     default=None)


def enabled() -> bool:
    return _tracer is not None


def _id_generator() -> Any:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class DerivedIds(RandomIdGenerator):
        """The span (and, for a root, trace) id the caller chose; random otherwise."""

        def generate_span_id(self) -> int:
            ids = _next_ids.get()
            return ids[1] if ids is not None else super().generate_span_id()

        def generate_trace_id(self) -> int:
            ids = _next_ids.get()
            return ids[0] if ids is not None else super().generate_trace_id()

    return DerivedIds()


def _console_exporter() -> Any:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    # One span a line, so a log collector (or a test) reads it like the JSON log lines.
    return ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + os.linesep)


def _otlp_exporter(log: Any) -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # type: ignore
        except ImportError:
            if log is not None:
                log.warning("otlp span export asked for but no OTLP exporter is installed"
                            " (pip install opentelemetry-exporter-otlp); not exporting to otlp")
            return None
    return OTLPSpanExporter()


def install(exporter: Any, service: str, *, batch: bool = False) -> Any:
    """Record spans to ``exporter`` from now on (also how a test installs an in-memory one)."""
    global _tracer, _provider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    tc.set_service(service)
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": f"canary-{service}"}),
                                   id_generator=_id_generator())
        _tracer = _provider.get_tracer("canary-voice")
    _provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    return _provider


def setup(service: str, log: Any = None) -> bool:
    """Name this process for derived span ids; start span export if the settings ask for it.
    Returns whether spans are recorded."""
    tc.set_service(service)
    if _tracer is not None:
        return True
    for name in settings().trace.exporters:
        exporter = _console_exporter() if name == "console" else _otlp_exporter(log)
        if exporter is not None:
            install(exporter, service, batch=True)
    if _tracer is not None and log is not None:
        log.info("span export on", exporters=list(settings().trace.exporters))
    return _tracer is not None


def shutdown() -> None:
    """Flush and stop export (at the end of a service)."""
    global _tracer, _provider
    if _provider is not None:
        with contextlib.suppress(Exception):
            _provider.shutdown()
    _tracer = _provider = None


def _parent_context(parent: TraceContext) -> Any:
    from opentelemetry import trace as ot

    # The tracestate goes on the parent: the SDK gives a child its parent's, so every exported
    # span's context carries the client's entries, as the trace on Kafka does.
    state = ot.TraceState.from_header([parent.state]) if parent.state is not None else None
    return ot.set_span_in_context(ot.NonRecordingSpan(ot.SpanContext(
        int(parent.trace_id, 16), int(parent.span_id, 16), is_remote=True, trace_flags=ot.TraceFlags(parent.flags),
        trace_state=state)))


@contextlib.contextmanager
def _record(name: str, ctx: TraceContext, parent: TraceContext | None, kind: str,
            attributes: dict[str, Any]) -> Iterator[Any]:
    from opentelemetry import trace as ot
    from opentelemetry.context import Context

    token = _next_ids.set((int(ctx.trace_id, 16), int(ctx.span_id, 16)))
    try:
        span = _tracer.start_span(name, context=_parent_context(parent) if parent is not None else Context(),
                                  kind=getattr(ot.SpanKind, kind.upper()),
                                  attributes={k: v for k, v in attributes.items() if v is not None})
    finally:
        _next_ids.reset(token)
    with ot.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
        yield span


def span(name: str, ctx: TraceContext, parent: TraceContext | None, *, kind: str = "internal",
         **attributes: Any) -> Any:
    """A context manager recording span ``name`` with id ``ctx.span_id`` in trace ``ctx.trace_id``,
    child of ``parent`` (None: the trace's root). Yields the span, or None while export is off
    (then nothing is made: one shared no-op context)."""
    if _tracer is None:
        return _NULL
    return _record(name, ctx, parent, kind, attributes)


def _span_context(ctx: TraceContext) -> Any:
    from opentelemetry import trace as ot

    return ot.SpanContext(int(ctx.trace_id, 16), int(ctx.span_id, 16), is_remote=True,
                          trace_flags=ot.TraceFlags(ctx.flags))


def batch(name: str, envs: Any, **attributes: Any) -> Any:
    """A context manager recording, while a batch of messages is handled in one go, span ``name``
    once for each trace among ``envs``: in that trace, child of its first message's span, with
    its id derived as :func:`handling` would derive it for that message, linked to the spans of
    its other messages. One span a trace (a call), not a message: a call's events in a batch are
    one piece of work, and a batch of thousands stays a few hundred spans. Yields the spans; off,
    the shared no-op context (``envs`` is not even read)."""
    if _tracer is None:
        return _NULL
    return _record_batch(name, envs, attributes)


@contextlib.contextmanager
def _record_batch(name: str, envs: Any, attributes: dict[str, Any]) -> Iterator[list[Any]]:
    from opentelemetry import trace as ot

    groups: dict[str, list[tuple[Any, TraceContext]]] = {}
    for env in envs:
        parent = tc.of(env)
        groups.setdefault(parent.trace_id, []).append((env, parent))
    kind = ot.SpanKind.CONSUMER
    spans = []
    for members in groups.values():
        first, parent = members[0]
        token = _next_ids.set((int(parent.trace_id, 16), int(tc.derive_span_id(f"{tc.service()}/{first.id}"), 16)))
        try:
            spans.append(_tracer.start_span(
                name, context=_parent_context(parent), kind=kind,
                links=[ot.Link(_span_context(p)) for _, p in members[1:]],
                attributes={"canary.call_id": first.call_id, "canary.event_id": first.id,
                            "canary.events": len(members),
                            **{k: v for k, v in attributes.items() if v is not None}}))
        finally:
            _next_ids.reset(token)
    try:
        yield spans
    except BaseException as exc:
        for s in spans:
            s.record_exception(exc)
            s.set_status(ot.Status(ot.StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        for s in spans:
            s.end()


def log_context(ctx: TraceContext, env: Any = None) -> dict[str, Any]:
    """What a log line written while handling ``env`` (in trace ``ctx``) carries."""
    out: dict[str, Any] = {"trace_id": ctx.trace_id}
    if env is not None:
        out["correlation_id"] = env.correlation_id or env.id
        out["call_id"] = env.call_id
    return out


@contextlib.contextmanager
def handling(env: Any, name: str, *, kind: str = "consumer", **attributes: Any) -> Iterator[TraceContext]:
    """Handle ``env`` in its trace: bind the log context and (export on) record span ``name``.
    Yields the handling's trace context (the parent of what it emits)."""
    parent = tc.of(env)
    ctx = parent.child(tc.derive_span_id(f"{tc.service()}/{env.id}"))
    with structlog.contextvars.bound_contextvars(**log_context(ctx, env)):
        if _tracer is None:
            yield ctx
            return
        with _record(name, ctx, parent, kind, {"canary.call_id": env.call_id, "canary.event_id": env.id,
                                               "canary.event_type": env.type, **attributes}):
            yield ctx
