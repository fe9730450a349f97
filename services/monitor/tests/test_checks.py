"""The monitor's look at dependencies and replicas: readiness answers read (from real
``/health/ready`` endpoints over HTTP too), dependency history kept, and the report built."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from tripline.common.health import CheckResult, Health, ready_endpoint
from tripline.common.queue_stats import QueueConsumers, WorkerInfo
from tripline.devstack.fakes import FakeClock, StepClock
from tripline.devstack.harness import Server, scaled, serve_app
from tripline.devstack.ports import free_port
from tripline.monitor.checks import (
    ConsumerCheck,
    DependencyBook,
    QueuesUnconsumed,
    ReplicaHealth,
    ReplicaProber,
    ReplicaState,
    build_report,
    queues_detail,
    queues_state,
    replica_from_answer,
)
from tripline.monitor.queues import ALL_QUEUES, Consumers, QueueReader, QueueState, QueueStatus
from tripline.monitor.targets import Target
from tripline.worker.stats import Heartbeat

NOW = 1_700_000_000.0
DEPENDENCIES = ("mongodb", "redis", "s3", "queues")


async def ok() -> None:
    return None


async def refused() -> None:
    raise ConnectionRefusedError("connection refused")


def unready_health() -> Health:
    health = Health()
    health.add("redis", ok)
    health.add("mongodb", refused)
    health.add("s3", refused, required=False)
    return health


def ready_health() -> Health:
    health = Health()
    health.add("redis", ok)
    health.add("s3", refused, required=False)
    return health


def draining_health() -> Health:
    health = ready_health()
    health.start_draining()
    return health


def target(service: str = "core", url: str = "http://core-1:8081") -> Target:
    return Target(service, url)


def replica(
    service: str, url: str, state: ReplicaState = "ready", error: str | None = None
) -> ReplicaHealth:
    return ReplicaHealth(Target(service, url), state, 2.0, error)


def checked(**answers: bool) -> DependencyBook:
    book = DependencyBook(DEPENDENCIES)
    book.update(
        [
            CheckResult(name, ok, True, 1.0, None if ok else f"{name} refused")
            for name, ok in answers.items()
        ],
        NOW,
    )
    return book


async def test_a_200_answer_is_ready_with_its_checks() -> None:
    ready, body = await ready_health().readiness()
    assert ready
    health = replica_from_answer(target(), 200, body, 3.0)
    assert health.state == "ready"
    assert health.ready
    assert health.error is None
    assert health.checks["redis"]["ok"] is True
    assert health.checks["s3"]["ok"] is False


async def test_a_503_answer_names_the_required_checks_failing() -> None:
    ready, body = await unready_health().readiness()
    assert not ready
    health = replica_from_answer(target(), 503, body, 3.0)
    assert health.state == "unready"
    assert not health.ready
    # s3 failing too is left out: it is optional and never made the replica unready.
    assert health.error == "unready: mongodb failing"
    assert health.checks == body["checks"]


async def test_a_503_answer_while_draining_is_draining() -> None:
    _ready, body = await draining_health().readiness()
    health = replica_from_answer(target(), 503, body, 3.0)
    assert (health.state, health.error) == ("draining", "draining")
    assert not health.ready


def test_a_503_answer_without_failing_required_checks_is_plain_unready() -> None:
    health = replica_from_answer(target(), 503, {"status": "unready", "checks": {}}, 3.0)
    assert (health.state, health.error) == ("unready", "unready")


@pytest.mark.parametrize(
    ("status_code", "body"),
    [(500, {"error": "boom"}), (404, {"detail": "Not Found"}), (503, ["unready"]), (503, None)],
)
def test_any_other_answer_is_a_broken_replica(status_code: int, body: Any) -> None:
    health = replica_from_answer(target(), status_code, body, 3.0)
    assert health.state == "unreachable"
    assert health.error == f"answered HTTP {status_code}"
    assert health.checks == {}


@pytest.mark.parametrize("checks", [None, [], "mongodb"])
@pytest.mark.parametrize("status_code", [200, 503])
def test_an_answer_whose_checks_are_not_an_object_is_read_without_them(
    status_code: int, checks: Any
) -> None:
    # Whatever a target URL answers, the look must go on and its report must serialise.
    state = "ready" if status_code == 200 else "unready"
    health = replica_from_answer(target(), status_code, {"status": state, "checks": checks}, 3.0)
    assert health.state == state
    assert json.loads(json.dumps(health.as_dict()))["checks"] == {}


def test_a_replica_shows_its_url_state_rounded_latency_error_and_checks() -> None:
    health = ReplicaHealth(
        target(), "unready", 3.14159, "unready: mongodb failing", {"mongodb": {"ok": False}}
    )
    assert health.as_dict() == {
        "url": "http://core-1:8081",
        "state": "unready",
        "latency_ms": 3.14,
        "last_error": "unready: mongodb failing",
        "checks": {"mongodb": {"ok": False}},
    }


def test_an_unchecked_dependency_is_unknown_and_counts_as_answering() -> None:
    book = DependencyBook(DEPENDENCIES)
    assert book.answered() == dict.fromkeys(DEPENDENCIES, True)
    assert book.records["redis"].as_dict() == {
        "state": "unknown",
        "latency_ms": None,
        "last_error": None,
        "last_error_at": None,
        "last_ok_at": None,
        "detail": {},
    }


def test_the_book_keeps_when_each_dependency_last_answered_and_last_failed() -> None:
    book = DependencyBook(DEPENDENCIES)
    book.update([CheckResult("redis", True, True, 1.23456)], NOW)
    assert book.records["redis"].as_dict() == {
        "state": "ok",
        "latency_ms": 1.23,
        "last_error": None,
        "last_error_at": None,
        "last_ok_at": NOW,
        "detail": {},
    }

    book.update([CheckResult("redis", False, True, 1500.0, "no answer within 1.5s")], NOW + 2)
    assert book.records["redis"].as_dict() == {
        "state": "down",
        "latency_ms": 1500.0,
        "last_error": "no answer within 1.5s",
        "last_error_at": NOW + 2,
        "last_ok_at": NOW,
        "detail": {},
    }
    assert book.answered()["redis"] is False

    book.update([CheckResult("redis", True, True, 0.5)], NOW + 4)
    redis = book.records["redis"].as_dict()
    assert (redis["state"], redis["last_ok_at"]) == ("ok", NOW + 4)
    # The last error stays on record, with its time: what went wrong, and when.
    assert (redis["last_error"], redis["last_error_at"]) == ("no answer within 1.5s", NOW + 2)
    assert book.answered()["redis"] is True


def test_a_result_for_a_dependency_not_in_the_book_is_kept_too() -> None:
    book = DependencyBook(["mongodb"])
    book.update([CheckResult("kafka", False, True, 1.0, "refused")], NOW)
    assert book.records["kafka"].as_dict()["state"] == "down"
    assert book.answered() == {"mongodb": True, "kafka": False}


@pytest.mark.parametrize(
    ("answers", "replicas", "status"),
    [
        ({"mongodb": True, "redis": True}, [("core", "ready")], "ok"),
        ({}, [("core", "ready"), ("tracking", "ready")], "ok"),
        ({"mongodb": False, "redis": True}, [("core", "ready")], "down"),
        ({"mongodb": True}, [("core", "unready")], "down"),
        ({"mongodb": True}, [("core", "unready"), ("core", "ready")], "degraded"),
        ({"mongodb": True, "redis": False}, [("core", "ready")], "degraded"),
        ({"mongodb": True, "queues": False}, [("core", "ready")], "degraded"),
        ({"mongodb": True}, [("core", "ready"), ("upload", "unreachable")], "degraded"),
        ({"mongodb": True}, [("core", "ready"), ("tracking", "draining")], "degraded"),
    ],
)
def test_the_report_combines_dependencies_and_replicas_with_the_platform_rule(
    answers: dict[str, bool], replicas: list[tuple[str, ReplicaState]], status: str
) -> None:
    healths = [
        replica(service, f"http://{service}-{n}:80", state)
        for n, (service, state) in enumerate(replicas)
    ]
    assert build_report(checked(**answers), healths, NOW).status == status


def test_the_report_shows_each_service_state_and_its_replicas_in_order() -> None:
    healths = [
        replica("core", "http://core-1:8081"),
        replica("tracking", "http://tracking-1:8083"),
        replica("tracking", "http://tracking-2:8085", "unready", "unready: redis failing"),
        replica("upload", "http://upload-1:8082", "unreachable", "ConnectError: refused"),
    ]
    report = build_report(checked(mongodb=True, redis=False), healths, NOW)

    assert report.status == "degraded"
    assert report.services == {"core": "ok", "tracking": "degraded", "upload": "down"}
    body = report.as_dict()
    assert body["status"] == "degraded"
    assert body["checked_at"] == NOW
    assert set(body["dependencies"]) == set(DEPENDENCIES)
    assert body["dependencies"]["redis"]["state"] == "down"
    assert body["dependencies"]["redis"]["last_error"] == "redis refused"
    assert body["dependencies"]["s3"]["state"] == "unknown"
    assert body["services"]["tracking"] == {
        "state": "degraded",
        "replicas": [
            {
                "url": "http://tracking-1:8083",
                "state": "ready",
                "latency_ms": 2.0,
                "last_error": None,
                "checks": {},
            },
            {
                "url": "http://tracking-2:8085",
                "state": "unready",
                "latency_ms": 2.0,
                "last_error": "unready: redis failing",
                "checks": {},
            },
        ],
    }
    assert body["services"]["upload"]["state"] == "down"
    json.dumps(body)

    assert report.summary() == {
        "status": "degraded",
        "checked_at": NOW,
        "components": {"core": "ok", "tracking": "degraded", "upload": "down"},
        "dependencies": {"mongodb": "ok", "redis": "down", "s3": "unknown", "queues": "unknown"},
    }


def replicas_app() -> Starlette:
    """Replicas in every state, one per path prefix, answering as the services do."""

    async def broken(_request: Request) -> Response:
        return JSONResponse({"error": "internal"}, status_code=500)

    async def odd(_request: Request) -> Response:
        return JSONResponse({"status": "unready", "checks": None}, status_code=503)

    async def proxy_page(_request: Request) -> Response:
        return PlainTextResponse("<html>502 Bad Gateway</html>", status_code=503)

    def replica_at(path: str, health: Health) -> Mount:
        return Mount(path, routes=[Route("/health/ready", ready_endpoint(health))])

    return Starlette(
        routes=[
            replica_at("/ready", ready_health()),
            replica_at("/unready", unready_health()),
            replica_at("/draining", draining_health()),
            Route("/broken/health/ready", broken),
            Route("/proxy/health/ready", proxy_page),
            Route("/odd/health/ready", odd),
        ]
    )


@pytest.fixture
async def replicas_url() -> AsyncIterator[str]:
    async with serve_app(replicas_app()) as url:
        yield url


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # Its own timeouts are long: the prober's bound must be what cuts a hang short.
    async with httpx.AsyncClient(timeout=scaled(30)) as client:
        yield client


@pytest.mark.integration
async def test_the_prober_reads_every_replica_over_http(
    replicas_url: str, client: httpx.AsyncClient
) -> None:
    targets = [
        Target("core", f"{replicas_url}/ready"),
        Target("core", f"{replicas_url}/unready"),
        Target("tracking", f"{replicas_url}/draining"),
        Target("upload", f"{replicas_url}/broken"),
        Target("gateway", f"{replicas_url}/proxy"),
        Target("gateway", f"http://127.0.0.1:{free_port()}"),
    ]
    healths = await ReplicaProber(client, targets, timeout_s=scaled(5)).check()

    assert [health.target for health in healths] == targets
    assert [health.state for health in healths] == [
        "ready",
        "unready",
        "draining",
        "unreachable",
        "unreachable",
        "unreachable",
    ]
    ready, unready, draining, broken, proxy, closed = healths
    assert ready.error is None
    assert ready.checks["redis"]["ok"] is True
    assert unready.error == "unready: mongodb failing"
    assert unready.checks["mongodb"]["ok"] is False
    assert draining.error == "draining"
    assert broken.error == "answered HTTP 500"
    assert proxy.error is not None
    assert proxy.error.startswith("JSONDecodeError")
    assert closed.error is not None
    assert closed.error.startswith("ConnectError")


@pytest.mark.integration
async def test_one_replica_answering_an_odd_body_does_not_sink_the_look(
    replicas_url: str, client: httpx.AsyncClient
) -> None:
    targets = [Target("core", f"{replicas_url}/ready"), Target("core", f"{replicas_url}/odd")]
    healths = await ReplicaProber(client, targets, timeout_s=scaled(5)).check()
    assert [health.state for health in healths] == ["ready", "unready"]


@pytest.mark.integration
async def test_a_replica_that_never_answers_costs_the_timeout_once_for_all(
    replicas_url: str, client: httpx.AsyncClient, unanswered_url: str
) -> None:
    timeout_s = scaled(0.5)
    targets = [
        Target("core", unanswered_url),
        Target("tracking", unanswered_url),
        Target("upload", unanswered_url),
        Target("gateway", f"{replicas_url}/ready"),
    ]
    started = time.monotonic()
    healths = await ReplicaProber(client, targets, timeout_s=timeout_s).check()
    elapsed = time.monotonic() - started

    assert timeout_s <= elapsed < 2 * timeout_s
    assert [health.state for health in healths] == ["unreachable"] * 3 + ["ready"]
    assert [health.error for health in healths[:3]] == [f"no answer in {timeout_s:g}s"] * 3


@pytest.mark.integration
async def test_the_latency_is_measured_on_the_injected_clock(
    replicas_url: str, client: httpx.AsyncClient
) -> None:
    prober = ReplicaProber(
        client,
        [Target("core", f"{replicas_url}/ready")],
        timeout_s=scaled(5),
        clock=StepClock(0.25),
    )
    [health] = await prober.check()
    assert health.latency_ms == 250.0


def consumers(**workers: int) -> Consumers:
    return Consumers(
        sum(workers.values()), {name: QueueConsumers(n, 2 * n) for name, n in workers.items()}
    )


@pytest.mark.parametrize(
    ("seen", "state"),
    [
        (consumers(documents=1, notifications=2, payments=1, system=1), "ok"),
        (consumers(documents=0, notifications=1, payments=1, system=1), "degraded"),
        (consumers(documents=0, notifications=0, payments=0, system=0), "down"),
        (None, "down"),
    ],
)
def test_the_queues_are_ok_when_each_has_a_consumer_degraded_when_some_has_none(
    seen: Consumers | None, state: str
) -> None:
    assert queues_state(seen) == state


def test_the_queues_detail_names_each_queue_s_consumers_and_the_total_depth() -> None:
    seen = consumers(documents=0, notifications=2)
    status = QueueStatus(
        NOW,
        tuple(
            QueueState(name, depth, 0, 0.0, 0, 0, 0, 0, None, 0)
            for name, depth in (("documents", 4), ("notifications", 1))
        ),
        (),
        0,
    )
    assert queues_detail(seen, status) == {
        "workers": 2,
        "consumers": {"documents": 0, "notifications": 2},
        "unconsumed": ["documents"],
        "depth": 5,
    }
    assert queues_detail(None, status) == {"depth": 5}
    assert queues_detail(None, None) == {}


def test_a_degraded_dependency_shows_as_degraded_until_its_next_check() -> None:
    book = checked(queues=False)
    book.records["queues"].degraded = True
    assert book.records["queues"].as_dict()["state"] == "degraded"
    assert book.answered()["queues"] is False
    assert (
        build_report(book, [replica("core", "http://core-1:80")], NOW).summary()["dependencies"][
            "queues"
        ]
        == "degraded"
    )
    book.update([CheckResult("queues", False, False, 1.0, "redis refused")], NOW + 2)
    assert book.records["queues"].as_dict()["state"] == "down"


@pytest.fixture
async def async_redis(fresh_redis: Server) -> AsyncIterator[AsyncRedis]:
    client = AsyncRedis.from_url(f"redis://127.0.0.1:{fresh_redis.port}/0", socket_timeout=1)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.mark.integration
async def test_the_queue_check_fails_naming_each_queue_without_a_live_consumer(
    fresh_redis: Server, async_redis: AsyncRedis
) -> None:
    redis = Redis.from_url(f"redis://127.0.0.1:{fresh_redis.port}/0", socket_timeout=1)
    check = ConsumerCheck(QueueReader(async_redis, clock=FakeClock(NOW)))
    try:
        with pytest.raises(QueuesUnconsumed, match="documents, notifications, payments"):
            await check()
        assert check.latest is not None
        assert check.latest.workers == 0

        general = WorkerInfo("worker@g", ("system", "notifications", "payments"), "prefork", 2)
        Heartbeat(redis, general, clock=FakeClock(NOW)).beat()
        documents = WorkerInfo("worker@d", ("documents",), "threads", 10)
        Heartbeat(redis, documents, clock=FakeClock(NOW - 5)).beat()
        await check()
        assert check.latest is not None
        assert check.latest.unconsumed() == []
        assert check.latest.queues["documents"] == QueueConsumers(1, 10)

        # SIGKILLed: no goodbye, its key just runs out (here, at once).
        redis.pexpire("workers:info:worker@d", 1)
        await asyncio.sleep(0.01)
        with pytest.raises(QueuesUnconsumed, match=r"no live consumer for documents$"):
            await check()
        assert check.latest is not None
        assert check.latest.queues["notifications"] == QueueConsumers(1, 2)
        assert set(check.latest.queues) == set(ALL_QUEUES)
    finally:
        redis.close()


@pytest.mark.integration
async def test_the_queue_check_without_redis_raises_and_keeps_no_reading(
    fresh_redis: Server, async_redis: AsyncRedis
) -> None:
    check = ConsumerCheck(QueueReader(async_redis, clock=FakeClock(NOW)))
    fresh_redis.stop()
    with pytest.raises(RedisError):
        await check()
    assert check.latest is None
