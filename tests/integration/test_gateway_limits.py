"""Rate limits at the gateway on real processes: one limit shared by every replica through Redis,
independent tiers, the in-process fallback while Redis is away or hung, and WebSocket upgrades.

The upstream is a small Starlette app standing in for core, upload, monitor and tracking: it
counts the requests that reach it, so "refused at the edge" means "the upstream saw nothing".
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tripline.common.auth import Role, mint_token
from tripline.common.channels import record_parties
from tripline.common.errors import PROBLEM_BASE, PROBLEM_CONTENT_TYPE
from tripline.common.settings import LOCAL_JWT_SECRET
from tripline.devstack.harness import (
    Server,
    python_process,
    scaled,
    scrape_metric,
    serve_app,
    start_together,
    stop_together,
)
from tripline.devstack.ports import free_port, free_ports
from tripline.devstack.probes import http_ok
from tripline.gateway.app import create_app as create_gateway
from tripline.gateway.settings import GatewaySettings
from tripline.tracking.app import create_app as create_tracking
from tripline.tracking.settings import TrackingSettings

pytestmark = pytest.mark.integration

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
RATELIMIT = re.compile(r'^"(?P<tier>[a-z]+)";r=(?P<remaining>\d+);t=(?P<reset>\d+)$')
SOS = {"lat": 52.52, "lng": 13.405}
UPLOAD = {
    "doc_type": "license",
    "filename": "licence.jpg",
    "content_type": "image/jpeg",
    "size_bytes": 1000,
}


class Upstream:
    """Stands in for every service behind the gateway: answers 200 with JSON and counts the
    requests it saw per ``"<METHOD> <path>"``."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=METHODS)])

    async def handle(self, request: Request) -> Response:
        await request.body()
        self.hits[f"{request.method} {request.url.path}"] += 1
        return JSONResponse({"path": request.url.path})

    def total(self, prefix: str = "") -> int:
        return sum(count for key, count in self.hits.items() if key.startswith(prefix))


def bearer(sub: str, role: Role = Role.RIDER) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(LOCAL_JWT_SECRET, sub=sub, role=role)}"}


def redis_url(redis: Server, db: int = 0) -> str:
    return f"redis://127.0.0.1:{redis.port}/{db}"


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def gateway_settings(redis: str, upstream: str, **overrides: Any) -> GatewaySettings:
    """Every upstream at ``upstream``; shedding out of the way (a busy 2-core machine must not
    turn a limit test into a shedding test) and a generous Redis timeout unless overridden."""
    values: dict[str, Any] = {
        "redis_url": redis,
        "core_url": upstream,
        "upload_url": upstream,
        "monitor_url": upstream,
        "tracking_urls": [upstream],
        "instance_id": "test",
        "health_cache_s": 0,
        "shed_target_s": 5.0,
        "limit_redis_timeout_s": scaled(2),
    }
    values.update(overrides)
    return GatewaySettings(**values)


@asynccontextmanager
async def gateway_in_process(settings: GatewaySettings) -> AsyncIterator[tuple[Starlette, str]]:
    app = create_gateway(settings)
    async with serve_app(app) as url:
        yield app, url


def ratelimit(answer: httpx.Response) -> tuple[str, int, int]:
    """``RateLimit: "<tier>";r=<remaining>;t=<reset>`` → (tier, remaining, reset)."""
    found = RATELIMIT.match(answer.headers.get("ratelimit", ""))
    assert found, f"no RateLimit header in {dict(answer.headers)}"
    return found["tier"], int(found["remaining"]), int(found["reset"])


def retry_after(answer: httpx.Response) -> int:
    value = answer.headers.get("retry-after", "")
    assert value.isdigit(), f"Retry-After is not whole seconds: {value!r}"
    return int(value)


def assert_rate_limited(answer: httpx.Response, *, tier: str, limit: int) -> int:
    """A complete 429: problem body, Retry-After and the IETF headers that agree with it."""
    assert answer.status_code == 429, answer.text
    assert answer.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body = answer.json()
    assert body["type"] == PROBLEM_BASE + "rate-limited"
    assert body["status"] == 429
    seconds = retry_after(answer)
    assert 1 <= seconds <= 61
    assert answer.headers["ratelimit-policy"] == f'"{tier}";q={limit};w=60'
    assert ratelimit(answer) == (tier, 0, seconds)
    return seconds


async def decisions(client: httpx.AsyncClient, tier: str, outcome: str, source: str) -> float:
    value = await scrape_metric(
        client,
        "gateway_rate_limit_decisions_total",
        tier=tier,
        outcome=outcome,
        source=source,
    )
    return value or 0.0


async def test_four_gateway_processes_share_one_limit_through_redis(
    fresh_redis: Server, tmp_logs: Path
) -> None:
    upstream = Upstream()
    async with serve_app(upstream.app) as upstream_url:
        ports = free_ports(4)
        env = {
            "REDIS_URL": redis_url(fresh_redis),
            "CORE_URL": upstream_url,
            "UPLOAD_URL": upstream_url,
            "MONITOR_URL": upstream_url,
            "TRACKING_URLS": upstream_url,
            "LIMIT_STANDARD_PER_MIN": "20",
            "GATEWAY_REPLICAS": "4",
            "LIMIT_REDIS_TIMEOUT_S": str(scaled(2)),
            "SHED_TARGET_S": "5",
            "LOG_JSON": "false",
            "OTEL_EXPORTER": "none",
        }
        gateways = [
            python_process(
                f"gateway-{index}",
                "tripline.gateway",
                {**env, "PORT": str(port), "INSTANCE_ID": f"gw-{index}"},
                http_ok(f"http://127.0.0.1:{port}/health/live"),
                tmp_logs / f"gateway-{index}.log",
            )
            for index, port in enumerate(ports)
        ]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        try:
            await start_together(gateways)
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            async with httpx.AsyncClient(timeout=scaled(30), limits=limits) as client:
                answers = await asyncio.gather(
                    *(
                        client.get(f"{urls[i % 4]}/api/users/u{i}", headers=bearer("burst"))
                        for i in range(120)
                    )
                )
                other = await client.get(f"{urls[3]}/api/users/me", headers=bearer("calm"))
        finally:
            await stop_together(gateways)

    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {200: 20, 429: 100}, statuses
    assert upstream.total("GET /api/users/u") == 20
    admitted = [answer for answer in answers if answer.status_code == 200]
    # Redis decides one hit at a time: the remaining quotas are 19, 18, ..., 0, each once.
    assert sorted(ratelimit(answer)[1] for answer in admitted) == list(range(20))
    for answer in admitted:
        assert answer.headers["ratelimit-policy"] == '"standard";q=20;w=60'
        assert "retry-after" not in answer.headers
    for answer in answers:
        if answer.status_code == 429:
            assert_rate_limited(answer, tier="standard", limit=20)
    # Every replica refused some: each got 30 requests and only 20 passed in all.
    refusing = {
        answer.headers["tripline-instance"] for answer in answers if answer.status_code == 429
    }
    assert refusing == {f"gateway/gw-{index}" for index in range(4)}
    # Another user's key is untouched.
    assert other.status_code == 200
    assert ratelimit(other)[:2] == ("standard", 19)


async def test_retry_after_is_the_wait_and_tiers_are_independent(fresh_redis: Server) -> None:
    upstream = Upstream()
    async with serve_app(upstream.app) as upstream_url:
        settings = gateway_settings(
            redis_url(fresh_redis),
            upstream_url,
            limit_standard_per_min=3,
            limit_critical_per_min=5,
            limit_upload_per_min=20,
        )
        async with (
            gateway_in_process(settings) as (_, gateway),
            httpx.AsyncClient(base_url=gateway, timeout=scaled(10)) as client,
        ):
            loop = asyncio.get_running_loop()
            started = loop.time()
            rider = bearer("tiers-rider")
            standard = [await client.get("/api/users/me", headers=rider) for _ in range(4)]
            elapsed = loop.time() - started
            sos = await client.post("/api/trips/t1/sos", json=SOS, headers=rider)

            driver = bearer("tiers-driver", Role.DRIVER)
            uploads = [
                await client.post("/api/uploads", json=UPLOAD, headers=driver) for _ in range(21)
            ]
            driver_standard = await client.get("/api/users/me", headers=driver)
            driver_sos = await client.post("/api/trips/t2/sos", json=SOS, headers=driver)

    assert [answer.status_code for answer in standard] == [200, 200, 200, 429]
    assert [ratelimit(answer)[1] for answer in standard[:3]] == [2, 1, 0]
    seconds = assert_rate_limited(standard[3], tier="standard", limit=3)
    # All three hits fell within `elapsed` of the refusal: the oldest leaves the 60 s window
    # (counted in whole seconds, one second conservative) no sooner than 60 - elapsed from now.
    assert seconds >= 59 - elapsed, (seconds, elapsed)

    # The critical tier is counted apart: an SOS passes although the standard tier is used up.
    assert sos.status_code == 200
    assert sos.headers["ratelimit-policy"] == '"critical";q=5;w=60'
    assert ratelimit(sos)[:2] == ("critical", 4)

    assert [answer.status_code for answer in uploads] == [200] * 20 + [429]
    assert uploads[0].headers["ratelimit-policy"] == '"upload";q=20;w=60'
    assert ratelimit(uploads[19])[:2] == ("upload", 0)
    assert_rate_limited(uploads[20], tier="upload", limit=20)
    assert upstream.hits["POST /api/uploads"] == 20
    # The driver's other tiers are untouched by the upload limit.
    assert driver_standard.status_code == 200
    assert ratelimit(driver_standard)[:2] == ("standard", 2)
    assert driver_sos.status_code == 200


async def test_limits_fall_back_to_a_local_share_while_redis_is_down(fresh_redis: Server) -> None:
    upstream = Upstream()
    async with serve_app(upstream.app) as upstream_url:
        settings = gateway_settings(
            redis_url(fresh_redis),
            upstream_url,
            limit_standard_per_min=10,
            limit_critical_per_min=2,
            gateway_replicas=2,
            limit_redis_timeout_s=0.5,
        )
        async with (
            gateway_in_process(settings) as (app, gateway),
            httpx.AsyncClient(base_url=gateway, timeout=scaled(10)) as client,
        ):
            before = [
                await client.get("/api/users/me", headers=bearer("before")) for _ in range(11)
            ]
            assert [answer.status_code for answer in before] == [200] * 10 + [429]
            assert await decisions(client, "standard", "allowed", "redis") == 10
            assert await scrape_metric(client, "gateway_rate_limit_degraded") == 0.0

            await asyncio.to_thread(fresh_redis.stop)
            during = [await client.get("/api/users/me", headers=bearer("during")) for _ in range(8)]
            # Critical traffic is never refused while the shared counters are out of reach,
            # even past its (tiny) limit.
            sos = [
                await client.post("/api/trips/t1/sos", json=SOS, headers=bearer("during"))
                for _ in range(5)
            ]
            assert app.state.limiter.degraded
            assert await scrape_metric(client, "gateway_rate_limit_degraded") == 1.0
            local_allowed = await decisions(client, "standard", "allowed", "local")
            local_refused = await decisions(client, "standard", "refused", "local")
            fail_open = await decisions(client, "critical", "allowed", "fail-open")

            await asyncio.to_thread(fresh_redis.start)
            deadline = asyncio.get_running_loop().time() + scaled(10)
            probe = 0
            while await scrape_metric(client, "gateway_rate_limit_degraded") != 0.0:
                assert asyncio.get_running_loop().time() < deadline, "Redis never used again"
                probe += 1
                # Any request after the pause probes Redis; a fresh user each time.
                answer = await client.get("/api/users/me", headers=bearer(f"probe-{probe}"))
                assert answer.status_code == 200, answer.text
                await asyncio.sleep(0.1)
            redis_allowed = await decisions(client, "standard", "allowed", "redis")
            after = [await client.get("/api/users/me", headers=bearer("after")) for _ in range(11)]
            assert not app.state.limiter.degraded
            assert await decisions(client, "standard", "allowed", "redis") == redis_allowed + 10

    # Down: every request still answered, the standard limit is this replica's share, 10 // 2.
    assert [answer.status_code for answer in during] == [200] * 5 + [429] * 3
    assert during[0].headers["ratelimit-policy"] == '"standard";q=5;w=60'
    assert_rate_limited(during[5], tier="standard", limit=5)
    assert [answer.status_code for answer in sos] == [200] * 5
    assert (local_allowed, local_refused, fail_open) == (5, 3, 5)
    # Back: the full shared limit again, counted in Redis.
    assert [answer.status_code for answer in after] == [200] * 10 + [429]
    assert after[0].headers["ratelimit-policy"] == '"standard";q=10;w=60'
    assert_rate_limited(after[10], tier="standard", limit=10)


async def test_a_hung_redis_costs_one_timeout_not_one_per_request(fresh_redis: Server) -> None:
    """SIGSTOP keeps Redis's sockets open while it answers nothing."""
    upstream = Upstream()
    async with serve_app(upstream.app) as upstream_url:
        settings = gateway_settings(
            redis_url(fresh_redis),
            upstream_url,
            limit_redis_timeout_s=0.5,
        )
        async with (
            gateway_in_process(settings) as (app, gateway),
            httpx.AsyncClient(base_url=gateway, timeout=scaled(10)) as client,
        ):
            limiter = app.state.limiter
            warm = await client.get("/api/users/me", headers=bearer("hung"))
            assert warm.status_code == 200
            assert (limiter.script_calls, limiter.script_failures) == (1, 0)
            assert fresh_redis.process is not None
            fresh_redis.process.pause()
            try:
                loop = asyncio.get_running_loop()
                started = loop.time()
                answers = [
                    await client.get("/api/users/me", headers=bearer("hung")) for _ in range(30)
                ]
                elapsed = loop.time() - started
                calls, failures = limiter.script_calls, limiter.script_failures
                degraded = limiter.degraded
            finally:
                fresh_redis.process.resume()

    assert [answer.status_code for answer in answers] == [200] * 30
    # Only the first request waited for Redis; the others were decided in process at once.
    assert (calls, failures) == (2, 1)
    assert degraded
    # 30 timeouts would take 15 s; one takes 0.5 s.
    assert elapsed < scaled(10)
    assert upstream.total("GET /api/users/me") == 31


async def test_websocket_upgrades_are_limited_per_subject(fresh_redis: Server) -> None:
    tracking_settings = TrackingSettings(
        redis_url=redis_url(fresh_redis, db=1),
        mongo_url=f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
        mongo_server_selection_timeout_ms=200,
        instance_id="ws",
    )
    tracking_redis = Redis.from_url(tracking_settings.redis_url)
    await record_parties(
        tracking_redis, "t1", rider_id="ws-rider", driver_id=None, status="requested"
    )
    await tracking_redis.aclose()
    async with serve_app(create_tracking(tracking_settings)) as tracking:
        settings = gateway_settings(
            redis_url(fresh_redis),
            dead_url(),
            tracking_urls=[tracking],
            limit_critical_per_min=3,
        )
        async with gateway_in_process(settings) as (_, gateway):
            base = gateway.replace("http://", "ws://")
            token = mint_token(LOCAL_JWT_SECRET, sub="ws-rider", role=Role.RIDER)
            snapshots = []
            for _ in range(3):
                async with connect(
                    f"{base}/ws/trips/t1?token={token}", open_timeout=scaled(10)
                ) as socket:
                    snapshots.append(json.loads(await socket.recv()))
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"{base}/ws/trips/t1?token={token}", open_timeout=scaled(10)):
                    pass
            other = mint_token(LOCAL_JWT_SECRET, sub="ws-other", role=Role.ADMIN)
            async with connect(f"{base}/ws/trips/t1?token={other}", open_timeout=scaled(10)) as ok:
                other_snapshot = json.loads(await ok.recv())

    assert [snapshot["type"] for snapshot in snapshots] == ["snapshot"] * 3
    response = refused.value.response
    assert response.status_code == 429
    assert json.loads(response.body or b"{}")["type"] == PROBLEM_BASE + "rate-limited"
    assert response.headers["retry-after"].isdigit()
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["ratelimit-policy"] == '"critical";q=3;w=60'
    assert other_snapshot["type"] == "snapshot"
