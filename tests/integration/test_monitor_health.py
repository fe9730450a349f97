"""Platform health through the gateway, from the monitor's real checks: Redis stopped →
degraded, hung → degraded without hanging anyone, back → ok; MongoDB stopped → down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tripline.common.auth import Role
from tripline.devstack.harness import scaled
from tripline.devstack.platform import MONITOR_ENV, PlatformStack
from tripline.devstack.testing import auth

pytestmark = pytest.mark.integration

# How long a change may take to show on /health: a look every HEALTH_INTERVAL_S, each check
# bounded by HEALTH_CHECK_TIMEOUT_S, the gateway's cache of HEALTH_CACHE_S, and slack.
NOTICE_WITHIN_S = (
    float(MONITOR_ENV["HEALTH_INTERVAL_S"]) + float(MONITOR_ENV["HEALTH_CHECK_TIMEOUT_S"]) + 0.5 + 3
)
# Every /health answer must come within the check timeout and the gateway's own, whatever hangs.
ANSWER_WITHIN_S = float(MONITOR_ENV["HEALTH_CHECK_TIMEOUT_S"]) * 2 + 2


@pytest.fixture
async def gateway(platform_stack: PlatformStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=platform_stack.gateway_url, timeout=scaled(ANSWER_WITHIN_S)
    ) as client:
        await until_status(client, "ok")
        yield client
    # Leave the platform as found for the next test.
    for server in (platform_stack.redis, platform_stack.mongo):
        server.resume()
        if server.process is None or not server.process.running():
            await asyncio.to_thread(server.start)


def admin(platform_stack: PlatformStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {platform_stack.admin_token}"}


async def until_status(client: httpx.AsyncClient, expected: str) -> dict[str, Any]:
    """Poll ``GET /health`` until it says ``expected``; every answer must come (the client's
    timeout) and match its status code. Returns the body."""
    deadline = asyncio.get_running_loop().time() + scaled(NOTICE_WITHIN_S + 30)
    while True:
        response = await client.get("/health")
        body = response.json()
        assert response.status_code == (503 if body["status"] == "down" else 200), body
        if body["status"] == expected:
            return dict(body)
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"/health never said {expected}: {body}")
        await asyncio.sleep(0.2)


async def test_health_is_ok_and_the_admin_view_lists_every_part(
    gateway: httpx.AsyncClient, platform_stack: PlatformStack
) -> None:
    body = await until_status(gateway, "ok")
    assert body["source"] == "monitor"
    assert body["dependencies"] == dict.fromkeys(("mongodb", "redis", "s3", "queues"), "ok")

    response = await gateway.get("/api/admin/health", headers=admin(platform_stack))
    assert response.status_code == 200
    view = response.json()
    assert view["status"] == "ok"
    for name in ("mongodb", "redis", "s3", "queues"):
        dependency = view["dependencies"][name]
        assert dependency["state"] == "ok", dependency
        assert dependency["latency_ms"] >= 0
        assert dependency["last_ok_at"] is not None
    assert view["dependencies"]["queues"]["detail"]["workers"] >= 1
    assert set(view["services"]) == {"gateway", "core", "upload", "tracking"}
    for service in view["services"].values():
        assert service["state"] == "ok"
        assert [replica["state"] for replica in service["replicas"]] == ["ready"]


async def test_redis_stopped_is_degraded_then_ok_again(
    gateway: httpx.AsyncClient, platform_stack: PlatformStack
) -> None:
    await asyncio.to_thread(platform_stack.redis.stop)
    body = await until_status(gateway, "degraded")
    assert body["dependencies"]["redis"] == "down"
    assert body["dependencies"]["mongodb"] == "ok"

    view = (await gateway.get("/api/admin/health", headers=admin(platform_stack))).json()
    assert view["dependencies"]["redis"]["state"] == "down"
    assert view["dependencies"]["redis"]["last_error"]
    # Core and the monitor serve on without Redis; upload and tracking need it.
    assert view["services"]["core"]["state"] == "ok"
    assert view["services"]["upload"]["state"] == "down"

    await asyncio.to_thread(platform_stack.redis.start)
    body = await until_status(gateway, "ok")
    assert body["dependencies"]["redis"] == "ok"


async def test_a_hung_redis_is_degraded_and_never_hangs_health(
    gateway: httpx.AsyncClient, platform_stack: PlatformStack
) -> None:
    """SIGSTOP keeps Redis's sockets open while it answers nothing; every /health call must
    still answer (the client's timeout would fail the test otherwise)."""
    platform_stack.redis.pause()
    try:
        body = await until_status(gateway, "degraded")
        assert body["dependencies"]["redis"] == "down"
        answers = [await gateway.get("/health") for _ in range(5)]
        assert {answer.json()["status"] for answer in answers} == {"degraded"}
        queues = await gateway.get("/api/admin/queues/status", headers=admin(platform_stack))
        # The last status read before the hang, marked stale, at once.
        assert queues.status_code == 200
        assert queues.json()["stale"] is True
    finally:
        platform_stack.redis.resume()
    await until_status(gateway, "ok")


async def test_mongodb_stopped_is_down_then_ok_again(
    gateway: httpx.AsyncClient, platform_stack: PlatformStack
) -> None:
    await asyncio.to_thread(platform_stack.mongo.stop)
    body = await until_status(gateway, "down")
    assert body["dependencies"]["mongodb"] == "down"

    await asyncio.to_thread(platform_stack.mongo.start)
    await until_status(gateway, "ok")


async def test_admin_views_need_an_admin(
    gateway: httpx.AsyncClient, platform_stack: PlatformStack
) -> None:
    paths = [
        "/api/admin/health",
        "/api/admin/queues/status",
        "/api/admin/metrics",
        "/api/admin/alerts",
    ]
    for path in paths:
        anonymous = await gateway.get(path)
        assert anonymous.status_code == 401, path
        rider = await gateway.get(path, headers=auth("r1", Role.RIDER))
        assert rider.status_code == 403, path
        assert rider.headers["content-type"].startswith("application/problem+json")
    # Straight to the monitor (inside the cluster) the token is checked all the same.
    async with httpx.AsyncClient(
        base_url=platform_stack.monitor_url, timeout=scaled(10)
    ) as monitor:
        assert (await monitor.get("/api/admin/health")).status_code == 401
        mine = await monitor.get("/api/admin/health", headers=admin(platform_stack))
        assert mine.status_code == 200


@pytest.mark.parametrize("window", ["0", "-5", "abc", "999999999"])
async def test_a_bad_metrics_window_is_422(
    gateway: httpx.AsyncClient, platform_stack: PlatformStack, window: str
) -> None:
    response = await gateway.get(
        "/api/admin/metrics", params={"window_s": window}, headers=admin(platform_stack)
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == "window_s"
