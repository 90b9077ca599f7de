"""OpenTelemetry traces along the path of a batch (SPEC §11, issue 23).

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set: then no tracer
provider is installed and no library is instrumented, so every span call goes to the API's
no-op tracer. On, each process configures itself once: the web app at creation (gunicorn
imports it in each worker, after the fork), a Celery worker in each prefork child
(``worker_process_init``: a span processor's export thread does not survive a fork) or, for a
pool that does not fork, in the worker itself. Spans go out over OTLP/HTTP in batches; the SDK
reads the other ``OTEL_*`` variables (headers, timeouts, sampling) itself.

What crosses process boundaries: Celery's instrumentation injects ``traceparent`` into each
task message's headers; a follow-up owed through the task outbox keeps the ``traceparent`` of
the transaction that owed it (``TRACEPARENT_KWARG`` in the row's kwargs, taken out before the
task is sent) and is sent inside that context, so a follow-up the beat drain sends still joins
the batch's trace; a signal outbox row keeps it in its message headers (W3C trace context, for
the stream's consumers too), and its publish span is a child of the span that wrote it.

Spans never hold event payloads or raw actor ids: no task arguments are recorded (Celery's
instrumentation records message metadata only), SQL statements are recorded without their
parameters and without sqlcommenter, and the HTTP span names the route's template, never the
path or query a request came with (``/actors/<path:actor_id>/profile``,
``/signals/recent?actor_id=``).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace

from ubi.settings import get_settings

log = logging.getLogger("ubi.tracing")

SERVICE_WEB = "ubi-web"
#: Key of a task outbox row's kwargs that carries the owing transaction's trace context.
TRACEPARENT_KWARG = "_traceparent"
TRACEPARENT_HEADER = "traceparent"

tracer = trace.get_tracer("ubi")

_lock = threading.Lock()
_provider: Any = None  # the SDK's TracerProvider once configured


def worker_service_name(group: str | None) -> str:
    return f"ubi-worker-{group}" if group else "ubi-worker"


def enabled() -> bool:
    return _provider is not None


def configure(service_name: str, *, exporter: Any = None) -> bool:
    """Install this process's tracer provider and instrument Celery, SQLAlchemy and psycopg,
    once; True when tracing is on. ``exporter`` (tests: an in-memory one) turns it on without
    an OTLP endpoint and exports each span as it ends."""
    global _provider
    if exporter is None and not get_settings().otel_endpoint:
        return False
    with _lock:
        if _provider is not None:
            return True
        # Imported only when on: the SDK and the instrumentations cost nothing otherwise.
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _provider = provider
        _instrument_libraries()
    log.info("traces on", extra={"ubi": {"service": service_name}})
    return True


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    from ubi.models import session as db_session

    CeleryInstrumentor().instrument()
    # Statement text only: no parameters (they hold tenant data), no sqlcommenter (it would
    # write trace ids into every statement and defeat PostgreSQL's statement statistics).
    PsycopgInstrumentor().instrument(enable_commenter=False, capture_parameters=False)
    for engine in db_session.existing_engines():  # later ones: ``create_db_engine``
        trace_engine(engine)


_traced_engines: weakref.WeakSet[Any] = weakref.WeakSet()


def trace_engine(engine: Any) -> None:
    """Trace one SQLAlchemy engine's statements (tracing on only).

    Its instrumentation's engine tracer, attached per engine: ``SQLAlchemyInstrumentor().
    instrument()`` would also patch ``create_async_engine``, whose import needs greenlet, which
    SQLAlchemy 2.1 no longer installs (and it declares SQLAlchemy < 2.1, though the engine
    events it listens to are unchanged in 2.1)."""
    if not enabled() or engine in _traced_engines:
        return
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import get_meter

    usage = get_meter("ubi").create_up_down_counter(
        "db.client.connections.usage", unit="connections")
    EngineTracer(trace.get_tracer("opentelemetry.instrumentation.sqlalchemy"), engine, usage,
                 enable_commenter=False)
    _traced_engines.add(engine)


def instrument_app(app: Any) -> None:
    """Trace a Flask app's requests (tracing on only), naming only route templates."""
    if not enabled():
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor.instrument_app(app, response_hook=_scrub_request_span,
                                     excluded_urls="/v1/ubi/metrics,/v1/ubi/health")


def _scrub_request_span(span: Any, _status: str, _headers: Any) -> None:
    """Replace the path and query a request came with by its route's template: both can carry
    an original actor id or a token (the same rule as the access log's). At the response: the
    instrumentation sets the request's attributes again after its request hook."""
    if not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    rule = str(attributes.get("http.route") or "(unmatched)")
    span.set_attribute("http.target", rule)
    scheme, host = attributes.get("http.scheme", "http"), attributes.get("http.host", "")
    span.set_attribute("http.url", f"{scheme}://{host}{rule}")
    for key in ("url.path", "url.full"):
        if key in attributes:
            span.set_attribute(key, rule)
    if "url.query" in attributes:
        span.set_attribute("url.query", "")


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None (no span, tracing off)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(TRACEPARENT_HEADER)


def log_ids() -> dict[str, str]:
    """``trace_id`` and ``span_id`` of the current span for a log line; empty outside one."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


@contextmanager
def restored(traceparent: str | None) -> Iterator[None]:
    """Run a block in the trace context a ``traceparent`` names (none: the current one)."""
    if not traceparent or not enabled():
        yield
        return
    token = otel_context.attach(propagate.extract({TRACEPARENT_HEADER: traceparent}))
    try:
        yield
    finally:
        otel_context.detach(token)


@contextmanager
def span(name: str, *, parent_headers: Mapping[str, Any] | None = None,
         kind: trace.SpanKind = trace.SpanKind.INTERNAL,
         attributes: Mapping[str, str | int] | None = None) -> Iterator[Any]:
    """A span of UBI's own (UBI's ids and counts as attributes, never personal data). With
    ``parent_headers`` holding a ``traceparent``, the span continues that trace and links to
    the current span (a drain publishing what another trace wrote)."""
    if not enabled():
        yield trace.INVALID_SPAN
        return
    parent = None
    links = None
    traceparent = (parent_headers or {}).get(TRACEPARENT_HEADER)
    if isinstance(traceparent, str):
        parent = propagate.extract({TRACEPARENT_HEADER: traceparent})
        here = trace.get_current_span().get_span_context()
        if here.is_valid and trace.get_current_span(parent).get_span_context().trace_id \
                != here.trace_id:
            links = [trace.Link(here)]
    with tracer.start_as_current_span(name, context=parent, kind=kind, links=links,
                                      attributes=dict(attributes or {})) as current:
        yield current


def inject(headers: dict[str, Any]) -> dict[str, Any]:
    """``headers`` with the current span's ``traceparent`` (unchanged when tracing is off)."""
    if enabled():
        propagate.inject(headers)
    return headers
