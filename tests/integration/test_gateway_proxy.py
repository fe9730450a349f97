"""The gateway proxies HTTP and WebSocket conversations to the right upstream replica, and the
trace continues across the hop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tripline.common.auth import Role, mint_token
from tripline.common.channels import parties_key, record_parties, sequence_key
from tripline.common.settings import LOCAL_JWT_SECRET
from tripline.common.telemetry import SERVICE_ATTRIBUTE
from tripline.devstack.harness import Backends, scaled, serve_app
from tripline.devstack.ports import free_port
from tripline.gateway.app import create_app as create_gateway
from tripline.gateway.settings import GatewaySettings
from tripline.tracking.app import create_app as create_tracking
from tripline.tracking.settings import TrackingSettings

pytestmark = pytest.mark.integration

TOKEN = mint_token(LOCAL_JWT_SECRET, sub="r1", role=Role.RIDER)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOCATION = {"lat": 52.52, "lng": 13.405, "heading": 90.0, "speed": 8.5, "ts": 1795000000, "seq": 7}


@pytest.fixture
async def platform(
    settings_for: Callable[..., Any], span_exporter: InMemorySpanExporter
) -> AsyncIterator[dict[str, str]]:
    """A gateway in front of two tracking replicas, all served over real sockets."""
    async with (
        serve_app(create_tracking(settings_for(TrackingSettings, instance_id="a"))) as track_a,
        serve_app(create_tracking(settings_for(TrackingSettings, instance_id="b"))) as track_b,
    ):
        settings = gateway_settings(settings_for, [track_a, track_b])
        async with serve_app(create_gateway(settings)) as gateway:
            yield {"gateway": gateway, "tracking_a": track_a, "tracking_b": track_b}


@pytest.fixture
async def known_location(backends: Backends) -> AsyncIterator[str]:
    trip_id = f"trip-{free_port()}"
    redis = Redis.from_url(backends.urls.redis_url)
    await redis.set(f"tracking:trip:{trip_id}:latest", json.dumps(LOCATION), ex=300)
    await redis.set(sequence_key(trip_id), LOCATION["seq"])
    await record_parties(redis, trip_id, rider_id="r1", driver_id=None, status="requested")
    yield trip_id
    await redis.delete(
        f"tracking:trip:{trip_id}:latest", sequence_key(trip_id), parties_key(trip_id)
    )
    await redis.aclose()


def origin(answer: httpx.Response) -> str:
    """Who produced the answer: the first hop listed in ``Tripline-Instance``."""
    return answer.headers["tripline-instance"].split(",")[0].strip()


def dead_url() -> str:
    """An upstream URL nothing listens on (never a running local stack's port)."""
    return f"http://127.0.0.1:{free_port()}"


def gateway_settings(settings_for: Callable[..., Any], tracking: list[str]) -> GatewaySettings:
    settings: GatewaySettings = settings_for(
        GatewaySettings,
        core_url=dead_url(),
        upload_url=dead_url(),
        monitor_url=dead_url(),
        tracking_urls=tracking,
        health_cache_s=0,
    )
    return settings


def spans_of_trace(exporter: InMemorySpanExporter, trace_id: int) -> list[ReadableSpan]:
    return [
        span
        for span in exporter.get_finished_spans()
        if span.context is not None and span.context.trace_id == trace_id
    ]


def server_span(spans: list[ReadableSpan], service: str) -> ReadableSpan:
    matches = [
        span
        for span in spans
        if span.kind == SpanKind.SERVER
        and (span.attributes or {}).get(SERVICE_ATTRIBUTE) == service
    ]
    assert matches, f"no server span of {service} in {[s.name for s in spans]}"
    return matches[0]


async def test_http_reaches_tracking_through_gateway_and_alternates_replicas(
    platform: dict[str, str], known_location: str
) -> None:
    async with httpx.AsyncClient(base_url=platform["gateway"], timeout=scaled(10)) as client:
        answers = [
            await client.get(f"/api/tracking/trips/{known_location}/location", headers=AUTH)
            for _ in range(4)
        ]
    assert [answer.status_code for answer in answers] == [200] * 4
    assert answers[0].json() == LOCATION
    assert {origin(answer) for answer in answers} == {"tracking/a", "tracking/b"}
    assert all(answer.headers["tripline-instance"].endswith("gateway/test") for answer in answers)


async def test_http_upstream_problem_is_relayed_unchanged(
    platform: dict[str, str], known_location: str, backends: Backends
) -> None:
    redis = Redis.from_url(backends.urls.redis_url)
    await redis.delete(f"tracking:trip:{known_location}:latest")
    await redis.aclose()
    async with httpx.AsyncClient(base_url=platform["gateway"], timeout=scaled(10)) as client:
        answer = await client.get(f"/api/tracking/trips/{known_location}/location", headers=AUTH)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"].endswith("/not-found")
    assert origin(answer).startswith("tracking/")


async def test_gateway_refuses_requests_without_a_token(platform: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=platform["gateway"], timeout=scaled(10)) as client:
        answer = await client.get("/api/tracking/trips/t1/location")
    assert answer.status_code == 401
    assert answer.json()["type"].endswith("/unauthorized")
    assert "tripline-instance" in answer.headers


async def test_one_trace_spans_gateway_and_tracking(
    platform: dict[str, str], known_location: str, span_exporter: InMemorySpanExporter
) -> None:
    span_exporter.clear()
    async with httpx.AsyncClient(base_url=platform["gateway"], timeout=scaled(10)) as client:
        answer = await client.get(f"/api/tracking/trips/{known_location}/location", headers=AUTH)
    assert answer.status_code == 200

    gateway_spans = [
        span
        for span in span_exporter.get_finished_spans()
        if span.kind == SpanKind.SERVER
        and (span.attributes or {}).get(SERVICE_ATTRIBUTE) == "gateway"
    ]
    assert len(gateway_spans) == 1
    trace_id = gateway_spans[0].context.trace_id
    spans = spans_of_trace(span_exporter, trace_id)
    tracking = server_span(spans, "tracking")
    client_spans = [span for span in spans if span.kind == SpanKind.CLIENT]
    assert tracking.parent is not None
    assert tracking.parent.span_id in {span.context.span_id for span in client_spans}


async def test_websocket_conversation_through_gateway(
    platform: dict[str, str], known_location: str, span_exporter: InMemorySpanExporter
) -> None:
    span_exporter.clear()
    ws_base = platform["gateway"].replace("http://", "ws://")
    url = f"{ws_base}/ws/trips/{known_location}?token={TOKEN}"
    async with connect(url, open_timeout=scaled(10)) as socket:
        snapshot = json.loads(await socket.recv())
        await socket.send(json.dumps({"type": "ping"}))
        pong = json.loads(await socket.recv())
        await socket.send("not json")
        error = json.loads(await socket.recv())
    assert snapshot == {"type": "snapshot", "seq": 7, "location": LOCATION, "status": "requested"}
    assert pong == {"type": "pong"}
    assert (error["type"], error["code"]) == ("error", "malformed-frame")

    # Both sides end their WebSocket spans only after the close handshake, so wait for them.
    deadline = asyncio.get_running_loop().time() + scaled(10)
    while True:
        finished = span_exporter.get_finished_spans()
        services = {(span.attributes or {}).get(SERVICE_ATTRIBUTE) for span in finished}
        if {"gateway", "tracking"} <= services:
            break
        assert asyncio.get_running_loop().time() < deadline, f"spans seen: {services}"
        await asyncio.sleep(0.05)
    gateway = server_span(list(finished), "gateway")
    spans = spans_of_trace(span_exporter, gateway.context.trace_id)
    server_span(spans, "tracking")
    recorded = [str(value) for span in finished for value in (span.attributes or {}).values()]
    assert not [value for value in recorded if TOKEN in value], "the bearer token leaked"


async def test_websocket_without_token_is_refused_with_a_problem(platform: dict[str, str]) -> None:
    ws_base = platform["gateway"].replace("http://", "ws://")
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{ws_base}/ws/trips/t1", open_timeout=scaled(10)):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body or b"{}")["status"] == 401


async def test_a_dead_replica_is_skipped(
    settings_for: Callable[..., Any], known_location: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with serve_app(
        create_tracking(settings_for(TrackingSettings, instance_id="live"))
    ) as live:
        settings = settings_for(GatewaySettings, tracking_urls=[dead, live], health_cache_s=0)
        async with serve_app(create_gateway(settings)) as gateway:
            async with httpx.AsyncClient(base_url=gateway, timeout=scaled(10)) as client:
                answers = [
                    await client.get(f"/api/tracking/trips/{known_location}/location", headers=AUTH)
                    for _ in range(3)
                ]
                health = await client.get("/health")
            ws_url = f"{gateway.replace('http://', 'ws://')}/ws/trips/{known_location}"
            async with connect(f"{ws_url}?token={TOKEN}", open_timeout=scaled(10)) as socket:
                snapshot = json.loads(await socket.recv())
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert {origin(answer) for answer in answers} == {"tracking/live"}
    assert snapshot["type"] == "snapshot"
    assert health.status_code == 503
    assert health.json()["components"]["tracking"] == "degraded"
