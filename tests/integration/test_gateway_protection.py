"""What the gateway refuses and how it protects the services behind it, on real sockets:
authentication and routing errors that never reach an upstream, failed authentications limited
per client address, the circuit breaker, retries only where they are safe, and load shedding
driven by real event-loop lag.

The upstream is a small Starlette app standing in for every service: it counts the requests it
saw, answers 500 while told to fail, and can hang a request until the gateway gives up on it. A
second, raw upstream drops connections without answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tripline.common.auth import Role, mint_token
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
from tripline.devstack.ports import free_ports
from tripline.devstack.probes import http_ok
from tripline.gateway.app import create_app as create_gateway
from tripline.gateway.settings import GatewaySettings
from tripline.gateway.shedding import Priority

pytestmark = pytest.mark.integration

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
SOS = {"lat": 52.52, "lng": 13.405}
UPLOAD = {
    "doc_type": "license",
    "filename": "licence.jpg",
    "content_type": "image/jpeg",
    "size_bytes": 1000,
}
RIDER = {"Authorization": f"Bearer {mint_token(LOCAL_JWT_SECRET, sub='r1', role=Role.RIDER)}"}
BAD_TOKEN = {"Authorization": "Bearer not-a-token"}


class Upstream:
    """Stands in for every service behind the gateway. Counts the requests it saw per
    ``"<METHOD> <path>"``; answers 500 while ``failing``; hangs the next ``hang_next[key]``
    requests of a key until the gateway hangs up (or the test ends); else answers 200 JSON."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.hang_next: Counter[str] = Counter()
        self.failing = False
        self.released = asyncio.Event()
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=METHODS)])

    async def handle(self, request: Request) -> Response:
        await request.body()
        key = f"{request.method} {request.url.path}"
        self.hits[key] += 1
        if self.hang_next[key] > 0:
            self.hang_next[key] -= 1
            await self._until_hung_up(request)
            return Response(status_code=204)
        if self.failing:
            return JSONResponse({"error": "failing on purpose"}, status_code=500)
        return JSONResponse({"path": request.url.path})

    async def _until_hung_up(self, request: Request) -> None:
        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        waits = {
            asyncio.ensure_future(disconnected()),
            asyncio.ensure_future(self.released.wait()),
        }
        _, pending = await asyncio.wait(
            waits, timeout=scaled(60), return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()

    def total(self, prefix: str = "") -> int:
        return sum(count for key, count in self.hits.items() if key.startswith(prefix))


@asynccontextmanager
async def upstream_server(upstream: Upstream) -> AsyncIterator[str]:
    async with serve_app(upstream.app) as url:
        try:
            yield url
        finally:
            # Before the server's shutdown waits for its handlers: no request stays hung.
            upstream.released.set()


class DroppingUpstream:
    """A raw HTTP/1.1 server that reads the first ``drops`` requests of each key and closes the
    connection without a word, then answers 200; counts what it read per key."""

    def __init__(self, drops: int = 1) -> None:
        self.drops = drops
        self.hits: Counter[str] = Counter()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *fields = head.split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            length = 0
            for line in fields:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            key = f"{method} {target}"
            self.hits[key] += 1
            if self.hits[key] > self.drops:
                body = b'{"ok":true}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@asynccontextmanager
async def dropping_server(upstream: DroppingUpstream) -> AsyncIterator[str]:
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def redis_url(redis: Server, db: int = 0) -> str:
    return f"redis://127.0.0.1:{redis.port}/{db}"


def gateway_settings(redis: str, upstream: str, **overrides: Any) -> GatewaySettings:
    """Every upstream at ``upstream``; shedding and Redis timeouts out of the way unless a test
    sets them (a busy 2-core machine must not turn a breaker test into a shedding test)."""
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
async def gateway(settings: GatewaySettings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The gateway served in this event loop and a client for it."""
    app = create_gateway(settings)
    async with (
        serve_app(app) as url,
        httpx.AsyncClient(base_url=url, timeout=scaled(30)) as client,
    ):
        yield app, client


def assert_problem(answer: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body: dict[str, Any] = answer.json()
    assert body["type"] == PROBLEM_BASE + slug
    assert body["status"] == status
    return body


def retry_after(answer: httpx.Response) -> int:
    value = answer.headers.get("retry-after", "")
    assert value.isdigit(), f"Retry-After is not whole seconds: {value!r}"
    return int(value)


async def test_refusals_are_problems_and_never_reach_the_upstream(fresh_redis: Server) -> None:
    upstream = Upstream()
    async with upstream_server(upstream) as upstream_url:
        settings = gateway_settings(redis_url(fresh_redis), upstream_url, max_body_bytes=1024)
        async with gateway(settings) as (_, client):
            no_token = await client.get("/api/users/u1")
            bad_token = await client.get("/api/users/u1", headers=BAD_TOKEN)
            foreign = mint_token("another-secret-of-32-bytes-or-more!", sub="r1", role=Role.RIDER)
            bad_signature = await client.get(
                "/api/users/u1", headers={"Authorization": f"Bearer {foreign}"}
            )
            wrong_role = await client.post("/api/uploads", json=UPLOAD, headers=RIDER)
            unknown = await client.get("/api/nothing/here", headers=RIDER)
            wrong_method = await client.delete("/api/users/me", headers=RIDER)
            too_large = await client.post(
                "/api/trips", content=b"x" * 2048, headers={**RIDER, "content-type": "text/plain"}
            )
            seen_before_valid = upstream.total()
            valid = await client.get("/api/users/u1", headers=RIDER)

    for answer in (no_token, bad_token, bad_signature):
        assert_problem(answer, 401, "unauthorized")
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert_problem(wrong_role, 403, "forbidden")
    assert_problem(unknown, 404, "not-found")
    assert_problem(wrong_method, 405, "method-not-allowed")
    assert wrong_method.headers["allow"] == "GET, HEAD, PATCH"
    assert_problem(too_large, 413, "payload-too-large")
    assert seen_before_valid == 0, upstream.hits
    assert valid.status_code == 200
    assert dict(upstream.hits) == {"GET /api/users/u1": 1}


async def test_failed_authentications_are_limited_per_client_address(
    fresh_redis: Server,
) -> None:
    upstream = Upstream()
    async with upstream_server(upstream) as upstream_url:
        settings = gateway_settings(redis_url(fresh_redis), upstream_url, limit_standard_per_min=5)
        async with gateway(settings) as (_, client):
            guesses = [await client.get("/api/users/u1", headers=BAD_TOKEN) for _ in range(7)]
            # A valid token is limited on its own subject, not on the address.
            valid = await client.get("/api/users/u1", headers=RIDER)

    assert [answer.status_code for answer in guesses] == [401] * 5 + [429] * 2
    assert_problem(guesses[5], 429, "rate-limited")
    assert 1 <= retry_after(guesses[5]) <= 61
    assert guesses[5].headers["ratelimit-policy"] == '"standard";q=5;w=60'
    assert valid.status_code == 200
    assert upstream.total() == 1


async def test_forwarded_for_counts_only_behind_trusted_proxies(
    fresh_redis: Server, tmp_logs: Path
) -> None:
    """Processes, not in-process apps: ``serve_app``'s uvicorn rewrites the client address from
    X-Forwarded-For itself (uvicorn's proxy_headers default), the services' own server does
    not."""
    upstream = Upstream()
    async with upstream_server(upstream) as upstream_url:
        ports = free_ports(2)
        env = {
            "CORE_URL": upstream_url,
            "UPLOAD_URL": upstream_url,
            "MONITOR_URL": upstream_url,
            "TRACKING_URLS": upstream_url,
            "LIMIT_STANDARD_PER_MIN": "3",
            "SHED_TARGET_S": "5",
            "LOG_JSON": "false",
        }
        plain, behind_proxy = (
            python_process(
                name,
                "tripline.gateway",
                {**env, **extra, "PORT": str(port), "REDIS_URL": redis_url(fresh_redis, db)},
                http_ok(f"http://127.0.0.1:{port}/health/live"),
                tmp_logs / f"{name}.log",
            )
            for name, port, db, extra in (
                ("gateway-plain", ports[0], 0, {}),
                ("gateway-trusting", ports[1], 1, {"TRUSTED_PROXIES": "127.0.0.1/32"}),
            )
        )
        servers = [plain, behind_proxy]
        try:
            await start_together(servers)
            async with httpx.AsyncClient(timeout=scaled(10)) as client:

                async def guess(port: int, forwarded_for: str) -> int:
                    answer = await client.get(
                        f"http://127.0.0.1:{port}/api/users/u1",
                        headers={**BAD_TOKEN, "X-Forwarded-For": forwarded_for},
                    )
                    return answer.status_code

                ignored = [
                    await guess(ports[0], address)
                    for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4")
                ]
                first = [await guess(ports[1], "203.0.113.1") for _ in range(4)]
                second = [await guess(ports[1], "203.0.113.2") for _ in range(2)]
        finally:
            await stop_together(servers)

    # Without trusted proxies the header is the client's word: one address, one quota.
    assert ignored == [401, 401, 401, 429]
    # Behind a trusted proxy each forwarded address has its own quota.
    assert first == [401, 401, 401, 429]
    assert second == [401, 401]
    assert upstream.total() == 0


async def test_circuit_breaker_opens_fails_fast_and_closes_after_a_probe(
    fresh_redis: Server,
) -> None:
    upstream = Upstream()
    upstream.failing = True
    async with upstream_server(upstream) as upstream_url:
        settings = gateway_settings(
            redis_url(fresh_redis),
            upstream_url,
            breaker_failure_threshold=3,
            breaker_reset_s=1.0,
        )
        state = {"name": "gateway_breaker_state", "upstream": upstream_url}
        async with gateway(settings) as (_, client):
            loop = asyncio.get_running_loop()
            failures = [await client.get("/api/users/u1", headers=RIDER) for _ in range(3)]
            opened = loop.time()
            refused = [await client.get("/api/users/u1", headers=RIDER) for _ in range(3)]
            open_state = await scrape_metric(client, **state)
            seen_while_open = upstream.total()

            upstream.failing = False
            deadline = loop.time() + scaled(10)
            while True:
                answer = await client.get("/api/users/u1", headers=RIDER)
                if answer.status_code != 503:
                    break
                assert_problem(answer, 503, "circuit-open")
                assert upstream.total() == 3, "a request passed the open breaker"
                assert loop.time() < deadline, "the breaker never let a probe through"
                await asyncio.sleep(0.1)
            probed_after = loop.time() - opened
            probe, seen_after_probe = answer, upstream.total()
            closed_state = await scrape_metric(client, **state)
            later = [await client.get("/api/users/u1", headers=RIDER) for _ in range(3)]

    assert [answer.status_code for answer in failures] == [500, 500, 500]
    for answer in refused:
        body = assert_problem(answer, 503, "circuit-open")
        assert body["dependency"] == "core"
        assert retry_after(answer) == 1
    assert seen_while_open == 3
    assert open_state == 2.0
    # The half-open probe went out once the reset time had passed, and it closed the breaker.
    assert probe.status_code == 200
    assert probed_after >= 0.9
    assert seen_after_probe == 4
    assert closed_state == 0.0
    assert [answer.status_code for answer in later] == [200, 200, 200]
    assert upstream.total() == 7


async def test_timeouts_are_repeated_only_for_idempotent_requests(fresh_redis: Server) -> None:
    """The route table's timeouts (GET 5 s, writes 10 s) are not settings: the three cases run
    at once so the test takes one write timeout, not three."""
    upstream = Upstream()
    get_key, plain_key, keyed_key = (
        "GET /api/users/slow",
        "POST /api/trips/t-plain/status",
        "POST /api/trips/t-keyed/status",
    )
    for key in (get_key, plain_key, keyed_key):
        upstream.hang_next[key] = 1
    async with upstream_server(upstream) as upstream_url:
        settings = gateway_settings(redis_url(fresh_redis), upstream_url)
        async with gateway(settings) as (_, client):
            status = {"status": "accepted"}
            get, plain, keyed = await asyncio.gather(
                client.get("/api/users/slow", headers=RIDER),
                client.post("/api/trips/t-plain/status", json=status, headers=RIDER),
                client.post(
                    "/api/trips/t-keyed/status",
                    json=status,
                    headers={**RIDER, "Idempotency-Key": "k-1"},
                ),
            )

    assert get.status_code == 200, get.text
    assert upstream.hits[get_key] == 2
    assert_problem(plain, 504, "upstream-timeout")
    assert upstream.hits[plain_key] == 1
    assert keyed.status_code == 200, keyed.text
    assert upstream.hits[keyed_key] == 2


async def test_dropped_connections_are_repeated_only_for_idempotent_requests(
    fresh_redis: Server,
) -> None:
    upstream = DroppingUpstream(drops=1)
    async with dropping_server(upstream) as upstream_url:
        settings = gateway_settings(redis_url(fresh_redis), upstream_url)
        async with gateway(settings) as (_, client):
            status = {"status": "accepted"}
            get = await client.get("/api/users/drop", headers=RIDER)
            plain = await client.post("/api/trips/t1/status", json=status, headers=RIDER)
            keyed = await client.post(
                "/api/trips/t2/status", json=status, headers={**RIDER, "Idempotency-Key": "k-2"}
            )

    assert get.status_code == 200, get.text
    assert upstream.hits["GET /api/users/drop"] == 2
    assert_problem(plain, 502, "upstream-unavailable")
    assert upstream.hits["POST /api/trips/t1/status"] == 1
    assert keyed.status_code == 200, keyed.text
    assert upstream.hits["POST /api/trips/t2/status"] == 2


async def test_retries_are_counted_in_metrics(fresh_redis: Server) -> None:
    upstream = DroppingUpstream(drops=1)
    async with dropping_server(upstream) as upstream_url:
        settings = gateway_settings(redis_url(fresh_redis), upstream_url)
        async with gateway(settings) as (_, client):
            answer = await client.get("/api/users/drop", headers=RIDER)
            retries = await scrape_metric(client, "gateway_upstream_retries_total")
    assert answer.status_code == 200
    assert upstream.hits["GET /api/users/drop"] == 2
    assert retries == 1.0


class LoopLag:
    """Real event-loop lag: a callback that blocks the loop for ``block_s`` and reschedules
    itself, so every turn of the loop (and every timer) waits that long."""

    def __init__(self, block_s: float) -> None:
        self.block_s = block_s
        self._running = False

    def start(self) -> None:
        self._running = True
        asyncio.get_running_loop().call_soon(self._block)

    def stop(self) -> None:
        self._running = False

    def _block(self) -> None:
        if not self._running:
            return
        time.sleep(self.block_s)
        asyncio.get_running_loop().call_soon(self._block)


Decision = tuple[int, Priority, bool]
EXPECTED_ADMITTED = {
    0: {Priority.LOW: True, Priority.NORMAL: True, Priority.CRITICAL: True},
    1: {Priority.LOW: False, Priority.NORMAL: True, Priority.CRITICAL: True},
    2: {Priority.LOW: False, Priority.NORMAL: False, Priority.CRITICAL: True},
}


async def send(client: httpx.AsyncClient, priority: Priority) -> httpx.Response:
    if priority is Priority.LOW:
        return await client.post("/api/analytics/events", json={"event": "x"}, headers=RIDER)
    if priority is Priority.NORMAL:
        return await client.get("/api/users/u1", headers=RIDER)
    return await client.post("/api/trips/t1/sos", json=SOS, headers=RIDER)


def assert_answer_matches(answer: httpx.Response, admitted: bool) -> None:
    if admitted:
        assert answer.status_code == 200, answer.text
    else:
        assert_problem(answer, 503, "overloaded")
        assert 1 <= retry_after(answer) <= 5


async def wait_for_level(app: Starlette, level: int, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + scaled(timeout_s)
    while app.state.shedder.level != level:
        assert loop.time() < deadline, f"shedding level stayed {app.state.shedder.level}"
        await asyncio.sleep(0.002)


async def test_load_shedding_follows_real_event_loop_lag(
    fresh_redis: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway shares this test's event loop, so blocking the loop is real lag for its
    monitor. Each admission is recorded with the level it was decided at (the shedder's own
    decision is kept), and every answer must match that level."""
    upstream = Upstream()
    async with upstream_server(upstream) as upstream_url:
        settings = gateway_settings(
            redis_url(fresh_redis),
            upstream_url,
            shed_target_s=0.01,
            shed_interval_s=0.1,
            limit_standard_per_min=10_000,
            limit_critical_per_min=10_000,
        )
        async with gateway(settings) as (app, client):
            shedder = app.state.shedder
            decided: list[Decision] = []
            admit = shedder.admit

            def recording_admit(priority: Priority) -> bool:
                level = shedder.level
                admitted: bool = admit(priority)
                decided.append((level, priority, admitted))
                return admitted

            monkeypatch.setattr(shedder, "admit", recording_admit)
            await wait_for_level(app, 0, timeout_s=5)
            lag = LoopLag(0.03)
            loop = asyncio.get_running_loop()

            # Rising and holding under lag: one request at a time, so answer i is decision i.
            rising: list[tuple[httpx.Response, Decision]] = []
            lag.start()
            try:
                deadline = loop.time() + scaled(20)
                while not {(2, p) for p in Priority} <= {(d[0], d[1]) for d in decided}:
                    assert loop.time() < deadline, f"level 2 not reached: {decided}"
                    for priority in Priority:
                        answer = await send(client, priority)
                        rising.append((answer, decided[-1]))
                        assert decided[-1][1] is priority
            finally:
                lag.stop()

            # Falling: level 1 lasts one interval; catch it with a LOW and a NORMAL at once.
            # Should the level pass 1 before both are decided, lag again and retry.
            falling: list[tuple[httpx.Response, Decision]] = []
            for _ in range(3):
                await wait_for_level(app, 1, timeout_s=5)
                mark = len(decided)
                low, normal = await asyncio.gather(
                    send(client, Priority.LOW), send(client, Priority.NORMAL)
                )
                pair = {d[1]: d for d in decided[mark:]}
                falling += [(low, pair[Priority.LOW]), (normal, pair[Priority.NORMAL])]
                if {d[0] for d in pair.values()} == {1}:
                    break
                lag.start()
                try:
                    await wait_for_level(app, 2, timeout_s=5)
                finally:
                    lag.stop()
            else:
                pytest.fail(f"never caught level 1: {falling}")

            await wait_for_level(app, 0, timeout_s=5)
            idle = [(await send(client, p), p) for p in Priority]
            low_shed = await scrape_metric(
                client, "gateway_admission_total", priority="low", outcome="shed"
            )

    for answer, (level, priority, admitted) in rising + falling:
        assert admitted is EXPECTED_ADMITTED[level][priority], (level, priority, admitted)
        assert_answer_matches(answer, admitted)
    levels_seen = {(level, priority) for _, (level, priority, _) in rising + falling}
    assert {(2, p) for p in Priority} <= levels_seen
    assert {(1, Priority.LOW), (1, Priority.NORMAL)} <= levels_seen
    # Critical traffic was never refused, at any level.
    assert all(admitted for level, priority, admitted in decided if priority is Priority.CRITICAL)
    for answer, _ in idle:
        assert answer.status_code == 200, answer.text
    low_refusals = sum(1 for _, p, admitted in decided if p is Priority.LOW and not admitted)
    assert low_refusals >= 2
    assert low_shed == low_refusals
