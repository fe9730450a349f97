from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from tripline.common.auth import Role, mint_token
from tripline.gateway.app import create_app, replica_sets
from tripline.gateway.routing import Upstream
from tripline.gateway.settings import GatewaySettings


def unused_ports(count: int) -> list[int]:
    """Ports nothing listens on: bound together (so distinct), then released."""
    with ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            for _ in range(count)
        ]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@pytest.fixture(scope="module")
def settings() -> GatewaySettings:
    core, upload, tracking_1, tracking_2, monitor, redis = (
        f"http://127.0.0.1:{port}" for port in unused_ports(6)
    )
    return GatewaySettings(
        # Nothing listens there: rate limits run on the in-process fallback.
        redis_url=redis.replace("http://", "redis://") + "/0",
        core_url=core,
        upload_url=upload,
        tracking_urls=[tracking_1, tracking_2],
        monitor_url=monitor,
        upstream_connect_timeout_s=1.0,
        health_check_timeout_s=1.0,
        health_cache_s=0,
        instance_id="gw-test",
    )


@pytest.fixture
async def client(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        yield client


def token(settings: GatewaySettings, **overrides: Any) -> str:
    claims: dict[str, Any] = {"sub": "u1", "role": Role.RIDER, **overrides}
    return mint_token(settings.jwt_secret.get_secret_value(), **claims)


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == f"https://tripline.dev/problems/{slug}"
    assert body["instance"] == response.request.url.path
    return body


def test_replica_sets_follow_the_settings(settings: GatewaySettings) -> None:
    replicas = replica_sets(settings)
    assert list(replicas[Upstream.CORE].urls) == [settings.core_url]
    assert list(replicas[Upstream.UPLOAD].urls) == [settings.upload_url]
    assert list(replicas[Upstream.TRACKING].urls) == settings.tracking_urls
    assert list(replicas[Upstream.MONITOR].urls) == [settings.monitor_url]


def test_tracking_urls_may_come_as_csv() -> None:
    settings = GatewaySettings(tracking_urls="http://a:1, http://b:2,")
    assert settings.tracking_urls == ["http://a:1", "http://b:2"]


async def test_a_request_without_a_token_is_unauthorized(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/trips/1")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == 'Bearer realm="tripline"'


@pytest.mark.parametrize(
    "authorization",
    ["Bearer not-a-jwt", "Basic dTE6cHc=", "Bearer ", "Bearer a.b.c"],
)
async def test_a_bad_token_is_unauthorized(client: httpx.AsyncClient, authorization: str) -> None:
    response = await client.get("/api/trips/1", headers={"Authorization": authorization})
    assert_problem(response, 401, "unauthorized")
    assert "www-authenticate" in response.headers


async def test_a_token_signed_with_another_secret_is_unauthorized(
    client: httpx.AsyncClient,
) -> None:
    forged = mint_token("some-other-secret-of-enough-length!!", sub="u1", role=Role.ADMIN)
    response = await client.get("/api/trips/1", headers={"Authorization": f"Bearer {forged}"})
    assert_problem(response, 401, "unauthorized")


async def test_an_expired_token_is_unauthorized(
    client: httpx.AsyncClient, settings: GatewaySettings
) -> None:
    expired = token(settings, ttl_s=60, now=1_000_000)
    response = await client.get("/api/trips/1", headers={"Authorization": f"Bearer {expired}"})
    body = assert_problem(response, 401, "unauthorized")
    assert "expired" in body["detail"]


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/api/trips/1", Role.RIDER),
        ("POST", "/api/trips", Role.RIDER),
        ("GET", "/api/users/me", Role.RIDER),
        ("POST", "/api/uploads/doc-1/complete", Role.DRIVER),
        ("GET", "/api/tracking/trips/1/location", Role.RIDER),
        ("GET", "/api/admin/queues/status", Role.ADMIN),
    ],
)
async def test_a_valid_token_with_nothing_listening_is_upstream_unavailable(
    client: httpx.AsyncClient, settings: GatewaySettings, method: str, path: str, role: Role
) -> None:
    response = await client.request(
        method, path, headers={"Authorization": f"Bearer {token(settings, role=role)}"}, json={}
    )
    assert_problem(response, 502, "upstream-unavailable")
    # Admitted by the limiter before the upstream failed: the quota is still reported.
    assert "ratelimit" in response.headers


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("POST", "/api/uploads", Role.RIDER),
        ("GET", "/api/uploads/doc-1", Role.ADMIN),
        ("GET", "/api/admin/queues/status", Role.DRIVER),
        ("POST", "/api/tracking/location", Role.RIDER),
        ("POST", "/api/trips/t1/payment", Role.DRIVER),
    ],
)
async def test_a_wrong_role_is_forbidden_before_anything_is_proxied(
    client: httpx.AsyncClient, settings: GatewaySettings, method: str, path: str, role: Role
) -> None:
    response = await client.request(
        method, path, headers={"Authorization": f"Bearer {token(settings, role=role)}"}, json={}
    )
    assert_problem(response, 403, "forbidden")


async def test_a_method_the_route_table_lacks_is_refused_with_allow(
    client: httpx.AsyncClient, settings: GatewaySettings
) -> None:
    response = await client.delete(
        "/api/users/me", headers={"Authorization": f"Bearer {token(settings)}"}
    )
    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET, HEAD, PATCH"


async def test_metrics_label_requests_with_the_route_table_pattern(
    client: httpx.AsyncClient, settings: GatewaySettings
) -> None:
    auth = {"Authorization": f"Bearer {token(settings)}"}
    await client.get("/api/trips/t-123", headers=auth)
    await client.get("/api/no/such/thing", headers=auth)
    text = (await client.get("/metrics")).text
    assert 'route="/api/trips/{trip_id}"' in text
    assert "t-123" not in text
    assert "/api/no/such/thing" not in text


@pytest.mark.parametrize("path", ["/api/nothing", "/api/tripsx/1", "/api/", "/nothing"])
async def test_an_unknown_path_is_not_found(
    client: httpx.AsyncClient, settings: GatewaySettings, path: str
) -> None:
    anonymous = await client.get(path)
    authenticated = await client.get(path, headers={"Authorization": f"Bearer {token(settings)}"})
    assert_problem(anonymous, 404, "not-found")
    assert_problem(authenticated, 404, "not-found")


async def test_an_oversized_body_is_payload_too_large(
    client: httpx.AsyncClient, settings: GatewaySettings
) -> None:
    response = await client.post(
        "/api/trips",
        headers={"Authorization": f"Bearer {token(settings)}"},
        content=b"x" * (settings.max_body_bytes + 1),
    )
    assert_problem(response, 413, "payload-too-large")


async def test_health_is_down_when_no_upstream_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 503
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["status"] == "down"
    assert body["components"] == {
        "core": "down",
        "upload": "down",
        "tracking": "down",
        "monitor": "down",
    }
    assert isinstance(body["checked_at"], float)


async def test_health_live_answers_without_upstreams(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "live"}
    assert response.headers["tripline-instance"] == "gateway/gw-test"


async def test_health_ready_reports_redis_without_requiring_it(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["redis"]["required"] is False


async def test_health_only_answers_get(client: httpx.AsyncClient) -> None:
    response = await client.post("/health")
    assert_problem(response, 405, "method-not-allowed")
