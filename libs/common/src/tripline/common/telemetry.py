"""OpenTelemetry tracing: one provider per process, instrumentation per app.

The entry point calls :func:`configure_tracing` once; app factories call :func:`instrument_app`.
With the exporter set to ``none`` the provider still creates spans (so trace ids reach the logs
and propagate to upstreams) but exports nothing.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from starlette.applications import Starlette

from tripline.common.routes import route_template
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

SERVICE_ATTRIBUTE = "tripline.service"


def build_provider(settings: ServiceSettings) -> tuple[TracerProvider, InMemorySpanExporter | None]:
    """Create a tracer provider for ``settings.otel_exporter``.

    Returns the provider and, for the ``memory`` exporter, the exporter so tests can read spans.
    """
    resource = Resource.create(
        {"service.name": settings.service_name, "service.instance.id": settings.instance_id}
    )
    provider = TracerProvider(
        resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.otel_sample_ratio))
    )
    memory: InMemorySpanExporter | None = None
    processor: SpanProcessor | None = None
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_endpoint
        exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces" if endpoint else None)
        processor = BatchSpanProcessor(exporter)
    elif settings.otel_exporter == "console":
        processor = SimpleSpanProcessor(ConsoleSpanExporter())
    elif settings.otel_exporter == "memory":
        memory = InMemorySpanExporter()
        processor = SimpleSpanProcessor(memory)
    if processor is not None:
        provider.add_span_processor(processor)
    return provider, memory


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
    """Install the process-wide tracer provider and instrument the client libraries.

    Call once per process, before the app starts. Returns the in-memory exporter when
    ``otel_exporter`` is ``memory``.
    """
    provider, memory = build_provider(settings)
    trace.set_tracer_provider(provider)
    instrument_libraries(libraries)
    return memory


def instrument_app(app: Starlette, service: str) -> None:
    """Trace every HTTP request and WebSocket of ``app``, tagging spans with ``service``.

    Uses the ASGI middleware directly: the Starlette instrumentor cannot drop the two extra
    ``http send`` spans it records per request.
    """

    def span_details(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        route = route_template(app, scope)
        method = scope.get("method", "WS") if scope["type"] == "http" else "WS"
        return f"{method} {route}", {"http.route": route}

    def tag(span: Any, scope: dict[str, Any]) -> None:
        if span is None or not span.is_recording():
            return
        span.set_attribute(SERVICE_ATTRIBUTE, service)
        if b"token=" in scope.get("query_string", b""):
            # A WebSocket may carry its bearer token in the query: keep it out of the traces.
            for key, value in (getattr(span, "attributes", None) or {}).items():
                if isinstance(value, str) and "token=" in value:
                    span.set_attribute(key, redact_token(value))

    app.add_middleware(
        OpenTelemetryMiddleware,
        default_span_details=span_details,
        server_request_hook=tag,
        exclude_spans=["send", "receive"],
    )


TOKEN_PARAMETER = re.compile(r"(?P<name>(?:^|[?&])token=)[^&#]*")


def redact_token(value: str) -> str:
    """``/ws/trips/1?token=eyJ...&since=4`` → ``/ws/trips/1?token=REDACTED&since=4``."""
    return TOKEN_PARAMETER.sub(r"\g<name>REDACTED", value)


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
