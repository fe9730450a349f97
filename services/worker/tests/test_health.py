from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from redis import Redis

from tripline.common.queue_stats import HEARTBEAT_TTL_S, WorkerInfo
from tripline.devstack.harness import Server, python_process, scaled
from tripline.devstack.ports import free_port
from tripline.devstack.probes import http_ok
from tripline.devstack.testing import fresh
from tripline.worker.health import READY_WITHIN_S, HealthServer, HeartbeatState, answer
from tripline.worker.settings import WorkerSettings
from tripline.worker.stats import Heartbeat


def state(running: bool = True, last_ok_at: float | None = 100.0) -> HeartbeatState:
    result = HeartbeatState()
    result.running = running
    result.last_ok_at = last_ok_at
    return result


def test_live_while_the_heartbeat_thread_runs() -> None:
    assert answer("/health/live", state(), now=100) == (200, {"status": "live"})
    status, body = answer("/health/live", state(running=False), now=100) or (0, {})
    assert status == 503
    assert body["status"] == "dead"


def test_liveness_never_depends_on_redis() -> None:
    assert answer("/health/live", state(last_ok_at=None), now=10_000) == (200, {"status": "live"})


def test_ready_while_a_beat_reached_redis_recently() -> None:
    assert answer("/health/ready", state(), now=100 + READY_WITHIN_S - 1) == (
        200,
        {"status": "ready"},
    )
    status, body = answer("/health/ready", state(), now=100 + READY_WITHIN_S) or (0, {})
    assert (status, body["status"]) == (503, "unready")
    assert answer("/health/ready", state(last_ok_at=None), now=100) == (
        503,
        {"status": "unready", "error": "no heartbeat reached Redis"},
    )


def test_readiness_outlasts_a_few_late_beats_that_end_the_consumer_key() -> None:
    # The monitor stops counting the worker as a consumer after HEARTBEAT_TTL_S; rollouts
    # must not stall on that, so readiness waits much longer.
    assert READY_WITHIN_S >= 10 * HEARTBEAT_TTL_S
    assert answer("/health/ready", state(), now=100 + 3 * HEARTBEAT_TTL_S) == (
        200,
        {"status": "ready"},
    )


def test_other_paths_are_not_served_here() -> None:
    assert answer("/metrics", state(), now=100) is None


def test_the_server_answers_over_http() -> None:
    server = HealthServer("127.0.0.1", 0, state(), clock=lambda: 101.0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{base}/health/live").json() == {"status": "live"}
        assert httpx.get(f"{base}/health/ready?probe=1").status_code == 200
        assert httpx.get(f"{base}/nothing").status_code == 404
    finally:
        server.stop()


@pytest.mark.integration
def test_a_beat_that_cannot_reach_redis_makes_the_worker_unready(fresh_redis: Server) -> None:
    redis = Redis.from_url(f"redis://127.0.0.1:{fresh_redis.port}/0", socket_timeout=1)
    clock = [1000.0]
    heartbeat = Heartbeat(
        redis, WorkerInfo("worker@t", ("documents",), "threads", 1), clock=lambda: clock[0]
    )
    heartbeat.beat()
    assert heartbeat.state.last_ok_at == 1000.0

    fresh_redis.stop()
    clock[0] += READY_WITHIN_S
    heartbeat.beat()
    heartbeat.state.running = True
    status, body = answer("/health/ready", heartbeat.state, now=clock[0]) or (0, {})
    assert status == 503
    assert "heartbeat not stored" in body["error"]
    redis.close()


def test_an_empty_port_setting_means_off() -> None:
    assert WorkerSettings(worker_health_port="").worker_health_port is None
    assert WorkerSettings(worker_health_port="8086").worker_health_port == 8086


@pytest.mark.integration
async def test_a_worker_process_serves_its_probes(
    backend_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    worker = python_process(
        "worker",
        "tripline.worker",
        {
            **backend_env,
            "INSTANCE_ID": fresh("health-worker"),
            "WORKER_QUEUES": "system",
            "WORKER_POOL": "threads",
            "WORKER_CONCURRENCY": "1",
            "WORKER_HEALTH_PORT": str(port),
        },
        http_ok(f"{base}/health/ready"),
        tmp_path / "worker.log",
    )
    await asyncio.to_thread(worker.start)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=scaled(5)) as client:
            assert (await client.get("/health/live")).json() == {"status": "live"}
            assert (await client.get("/health/ready")).status_code == 200
    finally:
        await asyncio.to_thread(worker.stop)
