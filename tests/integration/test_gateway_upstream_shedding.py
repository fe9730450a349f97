"""Shedding that sees the upstreams, on real sockets: a core that is the bottleneck while the
gateway's own loop keeps up.

Core's stand-in serves one request at a time, each taking ``SERVICE_S``: a capacity-bound
upstream (40 answers a second), whose answers wait longer the more requests are queued in it.
A flood of browsing (normal) and analytics (low) requests is sent to it through the gateway,
with SOS requests (critical) among them, a rider in an active trip (``active-trip:r2`` in
Redis, as core keeps it) browsing too, and a driver reading his upload from an upstream that is
not overloaded. The gateway's lag shedding is set out of reach, so whatever is shed is shed for
the upstream. Everything shares this test's one event loop, so the flood is kept small enough
for core, not the loop, to be the bottleneck: refused clients pause before trying again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tripline.common.auth import Role, mint_token
from tripline.common.channels import active_trip_key
from tripline.common.errors import PROBLEM_BASE, PROBLEM_CONTENT_TYPE
from tripline.common.settings import LOCAL_JWT_SECRET
from tripline.devstack.harness import Server, scaled, scrape_metric, serve_app
from tripline.gateway.app import create_app as create_gateway
from tripline.gateway.routing import Upstream
from tripline.gateway.settings import GatewaySettings

pytestmark = pytest.mark.integration

SERVICE_S = 0.025
METHODS = ["GET", "POST"]


def bearer(sub: str, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(LOCAL_JWT_SECRET, sub=sub, role=role)}"}


BROWSER = bearer("r1", Role.RIDER)
IN_TRIP = bearer("r2", Role.RIDER)
DRIVER = bearer("d1", Role.DRIVER)


class CapacityBound:
    """Answers 200 JSON, ``parallel`` requests at a time, each after ``service_s``; with
    ``service_s`` 0 it answers at once."""

    def __init__(self, service_s: float, parallel: int = 1) -> None:
        self.service_s = service_s
        self.slots = asyncio.Semaphore(parallel)
        self.hits: Counter[str] = Counter()
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=METHODS)])

    async def handle(self, request: Request) -> Response:
        await request.body()
        if self.service_s:
            async with self.slots:
                await asyncio.sleep(self.service_s)
        self.hits[request.url.path] += 1
        return JSONResponse({"path": request.url.path})


@asynccontextmanager
async def gateway(settings: GatewaySettings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    app = create_gateway(settings)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with (
        serve_app(app) as url,
        httpx.AsyncClient(base_url=url, timeout=scaled(30), limits=limits) as client,
    ):
        yield app, client


Send = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
KINDS: dict[str, Send] = {
    "low": lambda c: c.post("/api/analytics/events", json={"event": "x"}, headers=BROWSER),
    "browsing": lambda c: c.get("/api/users/u1", headers=BROWSER),
    "in_trip": lambda c: c.get("/api/trips/t2", headers=IN_TRIP),
    "sos": lambda c: c.post("/api/trips/t1/sos", json={"lat": 52.5, "lng": 13.4}, headers=BROWSER),
    "upload": lambda c: c.get("/api/uploads/up-1", headers=DRIVER),
}
# Flooding workers per kind, at least twice what core serves within the limit's target; the
# other kinds are one worker each. Every worker pauses after a refusal, the others after every
# answer too.
FLOOD = {"browsing": 12, "low": 4}
REFUSED_PAUSE_S = 0.1
PAUSE_S = 0.02


async def test_a_saturated_upstream_sheds_low_then_browsing_never_critical_nor_other_upstreams(
    fresh_redis: Server,
) -> None:
    core, other = CapacityBound(SERVICE_S), CapacityBound(0.0)
    redis_url = f"redis://127.0.0.1:{fresh_redis.port}/0"
    redis = Redis.from_url(redis_url)
    await redis.set(active_trip_key("r2"), "t2")
    await redis.aclose()
    answers: dict[str, list[httpx.Response]] = {kind: [] for kind in KINDS}
    async with serve_app(core.app) as core_url, serve_app(other.app) as other_url:
        settings = GatewaySettings(
            redis_url=redis_url,
            core_url=core_url,
            upload_url=other_url,
            monitor_url=other_url,
            tracking_urls=[other_url],
            instance_id="test",
            # The gateway's own lag shedding out of reach: this test is about the upstream.
            shed_target_s=5.0,
            limit_standard_per_min=1_000_000,
            limit_critical_per_min=1_000_000,
            limit_upload_per_min=1_000_000,
            limit_redis_timeout_s=scaled(2),
            # Sooner to the flood's level than from the default 100 (a shorter test); the
            # trip look-up's bound is the unit tests' business, here it must answer.
            shed_upstream_limit_initial=20,
            active_trip_wait_s=scaled(1),
        )
        async with gateway(settings) as (app, client):
            stop = asyncio.Event()

            async def worker(kind: str, pause_s: float) -> None:
                while not stop.is_set():
                    answer = await KINDS[kind](client)
                    answers[kind].append(answer)
                    if answer.status_code == 503:
                        # Not its Retry-After (seconds): enough that refusals do not spin
                        # the shared loop.
                        await asyncio.sleep(REFUSED_PAUSE_S)
                    elif pause_s:
                        await asyncio.sleep(pause_s)

            def enough() -> bool:
                shed = sum(a.status_code == 503 for a in answers["browsing"])
                return shed >= 20 and all(len(answers[k]) >= 8 for k in KINDS if k not in FLOOD)

            workers = [
                asyncio.create_task(worker(kind, 0.0 if kind in FLOOD else PAUSE_S))
                for kind in KINDS
                for _ in range(FLOOD.get(kind, 1))
            ]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + scaled(30)
            try:
                while not enough():
                    failed = [task for task in workers if task.done()]
                    if failed:
                        failed[0].result()
                    assert loop.time() < deadline, {k: len(v) for k, v in answers.items()}
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                await asyncio.gather(*workers)
            limits = app.state.upstream_limits
            core_limit, upload_limit = limits[Upstream.CORE].limit, limits[Upstream.UPLOAD].limit
            metrics = {
                (rank, upstream): await scrape_metric(
                    client, "gateway_upstream_shed_total", upstream=upstream, rank=rank
                )
                for rank in ("low", "browsing", "in_trip")
                for upstream in ("core", "upload")
            }
            lookups = {
                outcome: await scrape_metric(
                    client, "gateway_active_trip_lookups_total", outcome=outcome
                )
                for outcome in ("active", "inactive")
            }

    statuses = {kind: Counter(a.status_code for a in found) for kind, found in answers.items()}
    # Critical requests to the saturated upstream all passed, as did everything to the other.
    assert set(statuses["sos"]) == {200}, statuses
    assert set(statuses["upload"]) == {200}, statuses
    # The flood was shed, and only with shedding's answer: 503 overloaded with Retry-After.
    for kind in ("low", "browsing", "in_trip"):
        assert set(statuses[kind]) <= {200, 503}, statuses
    for answer in answers["browsing"] + answers["low"]:
        if answer.status_code == 503:
            assert answer.headers["content-type"] == PROBLEM_CONTENT_TYPE
            body: dict[str, Any] = answer.json()
            assert body["type"] == PROBLEM_BASE + "overloaded"
            assert 1 <= int(answer.headers["retry-after"]) <= 5

    def shed_share(kind: str) -> float:
        return statuses[kind][503] / sum(statuses[kind].values())

    # Low is refused first, browsing next, a rider in a trip last.
    assert shed_share("low") >= shed_share("browsing") > shed_share("in_trip"), statuses
    # Counted per upstream and rank, the upload upstream not at all; its limit untouched.
    for kind in ("low", "browsing", "in_trip"):
        assert (metrics[(kind, "core")] or 0) == statuses[kind][503], (kind, metrics)
        assert metrics[(kind, "upload")] is None, metrics
    assert core_limit < settings.shed_upstream_limit_initial
    assert upload_limit == settings.shed_upstream_limit_initial
    # The trip state was looked up, and found, for the contested requests.
    assert (lookups["active"] or 0) >= 1
    assert (lookups["inactive"] or 0) >= 1
