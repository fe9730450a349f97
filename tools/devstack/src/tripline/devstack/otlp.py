"""An OTLP/HTTP trace receiver for tests: takes what a collector (Jaeger) would take, keeps it
in memory and answers it back by trace id.

``python -m tripline.devstack.otlp`` listens on ``HOST``:``PORT`` (default 127.0.0.1:4318, the
OTLP/HTTP port), so a service's ``OTEL_EXPORTER_OTLP_ENDPOINT`` can point at it:

- ``POST /v1/traces``: an ``ExportTraceServiceRequest``, as protobuf (what the SDK's exporter
  sends) or OTLP/JSON, gzip-compressed or not;
- ``GET /traces/{trace_id}``: the spans received for that trace so far, as a JSON list (empty
  when none), each with its ids, name, kind, the resource's ``service.name`` and attributes;
- ``GET /health``.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import uvicorn
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

PROTOBUF = "application/x-protobuf"
DEFAULT_PORT = 4318
MAX_SPANS = 100_000


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str  # internal, server, client, producer, consumer (unspecified when not sent)
    service_name: str | None
    attributes: dict[str, object]
    start_ns: int
    end_ns: int


def spans_of(request: ExportTraceServiceRequest) -> Iterator[ReceivedSpan]:
    """Every span in ``request``, ids as lowercase hex (as ``traceparent`` writes them)."""
    for resource_spans in request.resource_spans:
        service = attributes_of(resource_spans.resource.attributes).get("service.name")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield ReceivedSpan(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex() or None,
                    name=span.name,
                    kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_").lower(),
                    service_name=None if service is None else str(service),
                    attributes=attributes_of(span.attributes),
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                )


def attributes_of(pairs: Iterable[KeyValue]) -> dict[str, object]:
    return {pair.key: value_of(pair.value) for pair in pairs}


def value_of(value: AnyValue) -> object:
    """An attribute's value as JSON: arrays as lists, key-value lists as objects, bytes as hex."""
    field = value.WhichOneof("value")
    if field is None:
        return None
    if field == "array_value":
        return [value_of(item) for item in value.array_value.values]
    if field == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    if field == "bytes_value":
        return value.bytes_value.hex()
    scalar: object = getattr(value, field)
    return scalar


def request_from_json(document: Any) -> ExportTraceServiceRequest:
    """Read an OTLP/JSON export. It is protobuf's JSON mapping but for its ids, which are hex
    rather than base64. Raises :class:`ValueError` when it is not one."""
    if not isinstance(document, dict):
        raise ValueError("an export is a JSON object")  # noqa: TRY004 (answered as a 400)
    # Whatever is not shaped as expected is left for the parser to refuse.
    for resource_spans in _objects(document.get("resourceSpans")):
        for scope_spans in _objects(resource_spans.get("scopeSpans")):
            for span in _objects(scope_spans.get("spans")):
                _hex_ids_to_base64(span)
                for link in _objects(span.get("links")):
                    _hex_ids_to_base64(link)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ValueError(str(exc)) from exc
    return request


def _objects(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _hex_ids_to_base64(item: dict[str, Any]) -> None:
    for key in ("traceId", "spanId", "parentSpanId"):
        if isinstance(item.get(key), str) and item[key]:
            item[key] = base64.b64encode(bytes.fromhex(item[key])).decode()


class TraceStore:
    """The spans received, by trace; past ``max_spans`` the traces first seen longest ago are
    forgotten whole."""

    def __init__(self, max_spans: int = MAX_SPANS) -> None:
        self._traces: OrderedDict[str, list[ReceivedSpan]] = OrderedDict()
        self._count = 0
        self._max_spans = max_spans

    def add(self, spans: Iterable[ReceivedSpan]) -> None:
        for span in spans:
            self._traces.setdefault(span.trace_id, []).append(span)
            self._count += 1
        while self._count > self._max_spans:
            _, forgotten = self._traces.popitem(last=False)
            self._count -= len(forgotten)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return list(self._traces.get(trace_id.lower(), ()))


def create_app(store: TraceStore | None = None) -> Starlette:
    traces = store if store is not None else TraceStore()

    async def receive(request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError, zlib.error):
                return PlainTextResponse("the body is not gzip", status_code=400)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        reply: Response
        try:
            if media_type == PROTOBUF:
                export = ExportTraceServiceRequest.FromString(body)
                reply = Response(
                    ExportTraceServiceResponse().SerializeToString(), media_type=PROTOBUF
                )
            elif media_type == "application/json":
                export = request_from_json(json.loads(body))
                reply = JSONResponse({})
            else:
                return PlainTextResponse(f"send {PROTOBUF} or application/json", status_code=415)
        except (DecodeError, ValueError) as exc:
            return PlainTextResponse(f"not an ExportTraceServiceRequest: {exc}", status_code=400)
        traces.add(spans_of(export))
        return reply

    async def trace(request: Request) -> Response:
        spans = traces.trace(request.path_params["trace_id"])
        return JSONResponse([asdict(span) for span in spans])

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/traces", receive, methods=["POST"]),
            Route("/traces/{trace_id}", trace),
            Route("/health", health),
        ]
    )


def main() -> None:
    uvicorn.run(
        create_app(),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", str(DEFAULT_PORT))),
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
