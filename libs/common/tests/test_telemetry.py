from __future__ import annotations

import importlib
import re
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tripline.common.settings import ServiceSettings
from tripline.common.telemetry import (
    LIBRARY_INSTRUMENTORS,
    build_provider,
    current_trace_id,
    otlp_traces_url,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def settings(**overrides: Any) -> ServiceSettings:
    return ServiceSettings(service_name="svc", instance_id="inst-1", **overrides)


def test_memory_exporter_receives_spans_of_its_provider() -> None:
    provider, exporter = build_provider(settings(otel_exporter="memory"))
    assert exporter is not None
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
        pass
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["inner", "outer"]
    assert spans[0].parent is not None
    assert spans[0].parent.span_id == spans[1].context.span_id
    resource = spans[0].resource.attributes
    assert resource["service.name"] == "svc"
    assert resource["service.instance.id"] == "inst-1"
    provider.shutdown()


def test_each_provider_has_its_own_memory_exporter() -> None:
    first, first_exporter = build_provider(settings(otel_exporter="memory"))
    second, second_exporter = build_provider(settings(otel_exporter="memory"))
    with first.get_tracer("t").start_as_current_span("only-first"):
        pass
    assert first_exporter is not None
    assert second_exporter is not None
    assert len(first_exporter.get_finished_spans()) == 1
    assert second_exporter.get_finished_spans() == ()
    first.shutdown()
    second.shutdown()


def test_none_exporter_returns_no_exporter_but_still_makes_trace_ids() -> None:
    provider, exporter = build_provider(settings(otel_exporter="none"))
    assert exporter is None
    with provider.get_tracer("t").start_as_current_span("s") as span:
        assert span.get_span_context().is_valid
        # Nothing would export it: recording it would only cost CPU.
        assert not span.is_recording()
    provider.shutdown()


@pytest.mark.parametrize("kind", ["console", "otlp"])
def test_other_exporters_return_no_memory_exporter(kind: str) -> None:
    provider, exporter = build_provider(
        settings(otel_exporter=kind, otel_exporter_otlp_endpoint="http://127.0.0.1:1")
    )
    assert exporter is None
    provider.shutdown()


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://jaeger-collector:4318", "http://jaeger-collector:4318/v1/traces"),
        ("http://jaeger-collector:4318/", "http://jaeger-collector:4318/v1/traces"),
        ("https://otel.example/base", "https://otel.example/base/v1/traces"),
        (None, None),
    ],
)
def test_spans_go_to_the_endpoints_traces_path(endpoint: str | None, url: str | None) -> None:
    assert otlp_traces_url(endpoint) == url


def test_zero_sample_ratio_drops_root_spans() -> None:
    provider, exporter = build_provider(settings(otel_exporter="memory", otel_sample_ratio=0.0))
    assert exporter is not None
    with provider.get_tracer("t").start_as_current_span("root") as span:
        assert not span.is_recording()
        assert span.get_span_context().is_valid
    assert exporter.get_finished_spans() == ()
    provider.shutdown()


def test_sampled_remote_parent_is_followed_whatever_the_ratio() -> None:
    provider, exporter = build_provider(settings(otel_exporter="memory", otel_sample_ratio=0.0))
    assert exporter is not None
    parent = SpanContext(
        int(TRACE_ID, 16), 0x00F067AA0BA902B7, is_remote=True, trace_flags=TraceFlags(1)
    )
    context = trace.set_span_in_context(NonRecordingSpan(parent))
    with provider.get_tracer("t").start_as_current_span("child", context=context):
        pass
    [span] = exporter.get_finished_spans()
    assert format(span.context.trace_id, "032x") == TRACE_ID
    provider.shutdown()


def test_current_trace_id_inside_and_outside_a_span() -> None:
    provider, _ = build_provider(settings())
    assert current_trace_id() is None
    with provider.get_tracer("t").start_as_current_span("s") as span:
        trace_id = current_trace_id()
        assert trace_id == format(span.get_span_context().trace_id, "032x")
        assert trace_id is not None
        assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert current_trace_id() is None
    provider.shutdown()


@pytest.mark.parametrize(("name", "target"), sorted(LIBRARY_INSTRUMENTORS.items()))
def test_library_instrumentors_exist(name: str, target: tuple[str, str]) -> None:
    module_name, class_name = target
    module = importlib.import_module(module_name)
    assert hasattr(module, class_name), name


async def test_instrumented_app_continues_an_incoming_trace(build_app: Any, serve: Any) -> None:
    async def whoami(_request: Request) -> Response:
        return JSONResponse({"trace_id": current_trace_id()})

    app = build_app([Route("/whoami", whoami)])
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    async with serve(app) as client:
        traced = await client.get("/whoami", headers={"traceparent": traceparent})
    assert traced.json()["trace_id"] == TRACE_ID


async def test_request_spans_name_the_route_and_never_record_the_query(
    build_app: Any, serve: Any, span_exporter: InMemorySpanExporter
) -> None:
    async def trip(_request: Request) -> Response:
        return JSONResponse({})

    app = build_app([Route("/trips/{trip_id}", trip)])
    span_exporter.clear()
    async with serve(app) as client:
        await client.get("/trips/42?token=eyJ.secret.sig&since=3")
    (span,) = span_exporter.get_finished_spans()
    assert span.name == "GET /trips/{trip_id}"
    assert span.kind is trace.SpanKind.SERVER
    attributes = dict(span.attributes or {})
    assert attributes["http.route"] == "/trips/{trip_id}"
    assert attributes["http.response.status_code"] == 200
    assert attributes["url.path"] == "/trips/42"
    assert not any("secret" in str(value) for value in attributes.values())
