from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tripline.devstack.harness import serve_app
from tripline.devstack.otlp import TraceStore, create_app, spans_of

TRACE_ID = "5b8efff798038103d269b633813fc60c"
ROOT_ID = "eee19b7ec3c1b174"
CHILD_ID = "eee19b7ec3c1b173"


def recorded_spans() -> Sequence[ReadableSpan]:
    """A server span of ``upload`` with a producer child, as the SDK hands them to exporters."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "upload"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /api/uploads", kind=SpanKind.SERVER) as server:
        server.set_attributes({"http.response.status_code": 202, "tags": ["a", "b"]})
        with tracer.start_as_current_span("apply_async/task", kind=SpanKind.PRODUCER):
            pass
    provider.shutdown()
    return memory.get_finished_spans()


def otlp_json() -> dict[str, Any]:
    """An OTLP/JSON export as the specification writes it: hex ids, integer kinds."""
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "worker"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "test"},
                        "spans": [
                            {
                                "traceId": TRACE_ID.upper(),
                                "spanId": CHILD_ID,
                                "parentSpanId": ROOT_ID,
                                "name": "run/task",
                                "kind": 5,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": "1544712661000000000",
                                "attributes": [
                                    {"key": "attempt", "value": {"intValue": "2"}},
                                    {"key": "ok", "value": {"boolValue": True}},
                                ],
                                "links": [{"traceId": TRACE_ID, "spanId": ROOT_ID}],
                                "unknownField": "ignored",
                            }
                        ],
                    }
                ],
            }
        ]
    }


@pytest.fixture
async def receiver() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://otlp") as client:
        yield client


def test_spans_keep_their_ids_parents_kinds_service_and_attributes() -> None:
    sdk_spans = recorded_spans()
    received = {span.name: span for span in spans_of(encode_spans(sdk_spans))}
    server, producer = received["POST /api/uploads"], received["apply_async/task"]
    assert server.trace_id == format(sdk_spans[0].context.trace_id, "032x")
    assert server.parent_span_id is None
    assert producer.parent_span_id == server.span_id
    assert (server.kind, producer.kind) == ("server", "producer")
    assert server.service_name == producer.service_name == "upload"
    assert server.attributes == {"http.response.status_code": 202, "tags": ["a", "b"]}
    assert server.end_ns >= server.start_ns > 0


@pytest.mark.parametrize("compressed", [False, True])
async def test_protobuf_exports_are_answered_by_trace_id(
    receiver: httpx.AsyncClient, compressed: bool
) -> None:
    sdk_spans = recorded_spans()
    body = encode_spans(sdk_spans).SerializeToString()
    headers = {"content-type": "application/x-protobuf"}
    if compressed:
        body, headers = gzip.compress(body), headers | {"content-encoding": "gzip"}
    answer = await receiver.post("/v1/traces", content=body, headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-protobuf"
    trace_id = format(sdk_spans[0].context.trace_id, "032x")
    spans = (await receiver.get(f"/traces/{trace_id}")).json()
    assert sorted(span["name"] for span in spans) == ["POST /api/uploads", "apply_async/task"]
    assert {span["service_name"] for span in spans} == {"upload"}


async def test_json_exports_use_hex_ids(receiver: httpx.AsyncClient) -> None:
    answer = await receiver.post("/v1/traces", json=otlp_json())
    assert answer.status_code == 200, answer.text
    [span] = (await receiver.get(f"/traces/{TRACE_ID}")).json()
    assert span == {
        "trace_id": TRACE_ID,
        "span_id": CHILD_ID,
        "parent_span_id": ROOT_ID,
        "name": "run/task",
        "kind": "consumer",
        "service_name": "worker",
        "attributes": {"attempt": 2, "ok": True},
        "start_ns": 1544712660000000000,
        "end_ns": 1544712661000000000,
    }


async def test_unknown_traces_are_empty_and_health_answers(receiver: httpx.AsyncClient) -> None:
    assert (await receiver.get(f"/traces/{TRACE_ID}")).json() == []
    assert (await receiver.get("/health")).json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"\xff\xff\xff", {"content-type": "application/x-protobuf"}, 400),
        (b"[1]", {"content-type": "application/json"}, 400),
        (b"{", {"content-type": "application/json"}, 400),
        (json.dumps({"resourceSpans": 3}).encode(), {"content-type": "application/json"}, 400),
        (b"x", {"content-type": "application/x-protobuf", "content-encoding": "gzip"}, 400),
        (b"{}", {"content-type": "text/plain"}, 415),
    ],
)
async def test_what_is_not_an_export_is_refused(
    receiver: httpx.AsyncClient, body: bytes, headers: dict[str, str], status: int
) -> None:
    answer = await receiver.post("/v1/traces", content=body, headers=headers)
    assert answer.status_code == status


def test_the_store_forgets_the_oldest_traces_whole() -> None:
    store = TraceStore(max_spans=3)
    spans = list(spans_of(encode_spans(recorded_spans())))
    later = list(spans_of(encode_spans(recorded_spans())))
    store.add(spans)
    store.add(later)
    assert store.trace(spans[0].trace_id) == []
    assert len(store.trace(later[0].trace_id)) == 2


async def test_the_sdks_own_exporter_delivers_to_it() -> None:
    store = TraceStore()
    sdk_spans = recorded_spans()
    async with serve_app(create_app(store)) as url:
        exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=Compression.Gzip)
        result = await asyncio.to_thread(exporter.export, sdk_spans)
        exporter.shutdown()
    assert result is SpanExportResult.SUCCESS
    assert len(store.trace(format(sdk_spans[0].context.trace_id, "032x"))) == 2
