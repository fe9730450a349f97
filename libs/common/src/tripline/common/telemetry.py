"""OpenTelemetry tracing: one provider per process, instrumentation per app.

The entry point calls :func:`configure_tracing` once; every app's ``ServiceMiddleware``
(:mod:`tripline.common.middleware`) opens one server span per request.
With the exporter set to ``none`` the provider still creates spans (so trace ids reach the logs
and propagate to upstreams) but exports nothing. ``OTEL_EXPORTER_OTLP_ENDPOINT`` alone turns on
the OTLP/HTTP exporter (:class:`~tripline.common.settings.ServiceSettings`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler, TraceIdRatioBased
from starlette.types import Scope

from tripline.common.settings import ServiceSettings

# Instrumentations live in optional extras: a service instruments only the clients it installs.
LIBRARY_INSTRUMENTORS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "httpx": ("opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
        "redis": ("opentelemetry.instrumentation.redis", "RedisInstrumentor"),
        "pymongo": ("opentelemetry.instrumentation.pymongo", "PymongoInstrumentor"),
        "botocore": ("opentelemetry.instrumentation.botocore", "BotocoreInstrumentor"),
        "celery": ("opentelemetry.instrumentation.celery", "CeleryInstrumentor"),
    }
)

# Clients that carry the trace context to another process; the others (Redis, MongoDB, S3)
# only record spans, so with nothing exported they are not instrumented at all: a wrapped call
# costs a non-recording span per command (3 % of tracking's time under load, py-spy).
PROPAGATING_LIBRARIES = frozenset({"httpx", "celery"})

SERVICE_ATTRIBUTE = "tripline.service"


def sampler_for(settings: ServiceSettings) -> Sampler:
    """Parent-based ratio sampling; with no exporter, nothing is recorded at all.

    Spans that nobody exports would only cost CPU (measured on the gateway: about a fifth of
    its time per request with two recording spans); sampled-out spans still carry trace ids
    for the logs and for propagation, but tell the next hop the trace is not sampled.
    """
    if settings.otel_exporter == "none":
        return ALWAYS_OFF
    return ParentBased(TraceIdRatioBased(settings.otel_sample_ratio))


def build_provider(settings: ServiceSettings) -> tuple[TracerProvider, InMemorySpanExporter | None]:
    """Create a tracer provider for ``settings.otel_exporter``.

    Returns the provider and, for the ``memory`` exporter, the exporter so tests can read spans.
    """
    resource = Resource.create(
        {"service.name": settings.service_name, "service.instance.id": settings.instance_id}
    )
    provider = TracerProvider(resource=resource, sampler=sampler_for(settings))
    memory: InMemorySpanExporter | None = None
    processor: SpanProcessor | None = None
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_traces_url(settings.otel_exporter_otlp_endpoint))
        processor = BatchSpanProcessor(exporter)
    elif settings.otel_exporter == "console":
        processor = SimpleSpanProcessor(ConsoleSpanExporter())
    elif settings.otel_exporter == "memory":
        memory = InMemorySpanExporter()
        processor = SimpleSpanProcessor(memory)
    if processor is not None:
        provider.add_span_processor(processor)
    return provider, memory


def otlp_traces_url(endpoint: str | None) -> str | None:
    """Where spans are posted for ``OTEL_EXPORTER_OTLP_ENDPOINT``: the collector's base URL, as
    every OpenTelemetry SDK reads that variable, plus ``/v1/traces``. None leaves the choice to
    the exporter (the standard variables, else ``localhost:4318``)."""
    return f"{endpoint.rstrip('/')}/v1/traces" if endpoint else None


def instrument_libraries(names: Iterable[str]) -> None:
    """Instrument client libraries globally; names not installed here are skipped."""
    for name in names:
        module_name, class_name = LIBRARY_INSTRUMENTORS[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        instrumentor = getattr(module, class_name)()
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


def configure_tracing(
    settings: ServiceSettings, libraries: Iterable[str] = LIBRARY_INSTRUMENTORS
) -> InMemorySpanExporter | None:
    """Install the process-wide tracer provider and instrument the client libraries (only
    those that propagate the trace context when nothing is exported).

    Call once per process, before the app starts. Returns the in-memory exporter when
    ``otel_exporter`` is ``memory``.
    """
    provider, memory = build_provider(settings)
    trace.set_tracer_provider(provider)
    if settings.otel_exporter == "none":
        libraries = [name for name in libraries if name in PROPAGATING_LIBRARIES]
    instrument_libraries(libraries)
    return memory


class _AsgiHeaders(Getter[Sequence[tuple[bytes, bytes]]]):
    """Reads propagation fields straight from an ASGI scope's raw header list."""

    def get(self, carrier: Sequence[tuple[bytes, bytes]], key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        values = [value.decode("latin-1") for field, value in carrier if field == name]
        return values or None

    def keys(self, carrier: Sequence[tuple[bytes, bytes]]) -> list[str]:
        return [field.decode("latin-1") for field, _ in carrier]


ASGI_HEADERS = _AsgiHeaders()


def incoming_context(scope: Scope) -> Context:
    """The trace context the caller sent in the request's headers (empty when none)."""
    return propagate.extract(scope["headers"], getter=ASGI_HEADERS)


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
