from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tripline.common.errors import DependencyUnavailable
from tripline.common.metrics import HttpMetrics
from tripline.common.middleware import ServiceMiddleware
from tripline.common.routes import UNMATCHED


async def item(request: Request) -> Response:
    return PlainTextResponse(request.path_params["item_id"])


async def created(_request: Request) -> Response:
    return PlainTextResponse("made", status_code=201)


async def fails(_request: Request) -> Response:
    raise RuntimeError("kaput")


def instrumented() -> tuple[Starlette, CollectorRegistry]:
    registry = CollectorRegistry()
    app = Starlette(
        routes=[
            Route("/items/{item_id}", item),
            Route("/items", created, methods=["POST"]),
            Route("/fails", fails),
        ]
    )
    app.add_middleware(
        ServiceMiddleware, service="svc", instance="i", metrics=HttpMetrics(registry, "svc")
    )
    return app, registry


def client_for(app: Starlette) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://t")


def latency_count(registry: CollectorRegistry, **labels: str) -> float | None:
    return registry.get_sample_value("http_request_duration_seconds_count", labels)


async def test_requests_are_recorded_per_route_template() -> None:
    app, registry = instrumented()
    async with client_for(app) as client:
        for item_id in ("1", "2", "three"):
            assert (await client.get(f"/items/{item_id}")).status_code == 200
        assert (await client.post("/items")).status_code == 201
    labels = {"service": "svc", "method": "GET", "route": "/items/{item_id}", "status": "200"}
    assert latency_count(registry, **labels) == 3
    assert latency_count(registry, **{**labels, "route": "/items/1"}) is None
    post = {"service": "svc", "method": "POST", "route": "/items", "status": "201"}
    assert latency_count(registry, **post) == 1
    responses = {"service": "svc", "method": "POST", "route": "/items", "status_class": "2xx"}
    assert registry.get_sample_value("http_responses_total", responses) == 1


async def test_unknown_paths_share_the_unmatched_label() -> None:
    app, registry = instrumented()
    async with client_for(app) as client:
        for path in ("/a", "/b/c", "/items"):
            await client.get(path)
    labels = {"service": "svc", "method": "GET", "route": UNMATCHED}
    assert latency_count(registry, **labels, status="404") == 2
    # A refused method still names the route that refused it: a bounded label.
    refused = {**labels, "route": "/items"}
    assert latency_count(registry, **refused, status="405") == 1
    text = registry_text(registry)
    assert "/b/c" not in text


async def test_server_errors_are_counted_even_when_the_app_raises() -> None:
    app, registry = instrumented()
    async with client_for(app) as client:
        response = await client.get("/fails")
    assert response.status_code == 500
    labels = {"service": "svc", "method": "GET", "route": "/fails", "status": "500"}
    assert latency_count(registry, **labels) == 1
    errors = {"service": "svc", "route": "/fails"}
    assert registry.get_sample_value("http_server_errors_total", errors) == 1


async def test_client_errors_are_not_server_errors() -> None:
    app, registry = instrumented()
    async with client_for(app) as client:
        await client.get("/nope")
    errors = {"service": "svc", "route": UNMATCHED}
    assert registry.get_sample_value("http_server_errors_total", errors) is None


def test_histogram_uses_the_latency_buckets() -> None:
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry, "svc")
    metrics.latency.labels("svc", "GET", "/x", "200").observe(0.03)
    le = {"service": "svc", "method": "GET", "route": "/x", "status": "200"}
    bucket = "http_request_duration_seconds_bucket"
    assert registry.get_sample_value(bucket, {**le, "le": "0.025"}) == 0
    assert registry.get_sample_value(bucket, {**le, "le": "0.05"}) == 1


def test_one_registry_cannot_hold_two_http_metrics_but_two_registries_can() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    HttpMetrics(first, "a")
    HttpMetrics(second, "b")
    with pytest.raises(ValueError, match="Duplicated"):
        HttpMetrics(first, "a")


def registry_text(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


async def test_metrics_endpoint_of_service_app(build_app: Any, serve: Any) -> None:
    async def down(_request: Request) -> Response:
        raise DependencyUnavailable("redis")

    app = build_app([Route("/items/{item_id}", item), Route("/down", down)])
    async with serve(app) as client:
        await client.get("/items/42")
        await client.get("/down")
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "/items/42" not in text
    item_labels = {"service": "t", "method": "GET", "route": "/items/{item_id}", "status": "200"}
    assert (item_labels, 1.0) in samples(text, "http_request_duration_seconds_count")
    assert samples(text, "http_server_errors_total") == [({"service": "t", "route": "/down"}, 1.0)]
    assert (
        app.state.metrics_registry.get_sample_value(
            "http_request_duration_seconds_count",
            {"service": "t", "method": "GET", "route": "/metrics", "status": "200"},
        )
        == 1
    )
