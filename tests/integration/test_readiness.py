"""Every service is ready with its dependencies up, unready without Redis, and ready again
once Redis returns — without restarting the service."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tripline.common.settings import ServiceSettings
from tripline.core.app import create_app as create_core
from tripline.core.settings import CoreSettings
from tripline.devstack.harness import Server, python_process, scaled, serve_app
from tripline.devstack.ports import free_port
from tripline.devstack.probes import http_ok
from tripline.gateway.app import create_app as create_gateway
from tripline.gateway.settings import GatewaySettings
from tripline.monitor.app import create_app as create_monitor
from tripline.monitor.settings import MonitorSettings
from tripline.sandbox.app import create_app as create_sandbox
from tripline.sandbox.settings import SandboxSettings
from tripline.tracking.app import create_app as create_tracking
from tripline.tracking.settings import TrackingSettings
from tripline.upload.app import create_app as create_upload
from tripline.upload.settings import UploadSettings

pytestmark = pytest.mark.integration

SERVICES: dict[str, tuple[Callable[[Any], Starlette], type[ServiceSettings], set[str]]] = {
    "core": (create_core, CoreSettings, {"redis", "mongodb"}),
    "upload": (create_upload, UploadSettings, {"redis", "mongodb", "s3"}),
    "tracking": (create_tracking, TrackingSettings, {"redis", "mongodb"}),
    "monitor": (create_monitor, MonitorSettings, {"redis", "mongodb", "s3", "queues"}),
}
# Core serves from MongoDB without Redis, and the monitor reports Redis rather than needing it.
REDIS_DEPENDENT = ("upload", "tracking")
REDIS_OPTIONAL = ("core", "monitor")


async def ready_state(base_url: str) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=scaled(10)) as client:
        response = await client.get(f"{base_url}/health/ready")
    return response.status_code, response.json()


async def eventually(base_url: str, expected_status: int, timeout_s: float = 20) -> dict[str, Any]:
    """Poll readiness until it answers ``expected_status``; fail with the last body if not."""
    deadline = asyncio.get_running_loop().time() + scaled(timeout_s)
    while True:
        status, body = await ready_state(base_url)
        if status == expected_status:
            return body
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{base_url} stayed {status}: {body}")
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("name", sorted(SERVICES))
async def test_service_is_ready_with_its_dependencies_up(
    name: str, settings_for: Callable[..., Any]
) -> None:
    factory, settings_cls, expected_checks = SERVICES[name]
    async with serve_app(factory(settings_for(settings_cls))) as url:
        body = await eventually(url, 200)
    assert body["status"] == "ready"
    assert set(body["checks"]) == expected_checks
    # No worker runs here: the monitor's queue check reports that without becoming unready.
    answering = {name: check["ok"] for name, check in body["checks"].items() if name != "queues"}
    assert all(answering.values()), body


async def test_gateway_and_sandbox_are_ready(settings_for: Callable[..., Any]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gateway_settings = settings_for(
        GatewaySettings, core_url=dead, upload_url=dead, monitor_url=dead, tracking_urls=[dead]
    )
    async with (
        serve_app(create_gateway(gateway_settings)) as gateway,
        serve_app(create_sandbox(settings_for(SandboxSettings))) as sandbox,
    ):
        for url in (gateway, sandbox):
            status, body = await ready_state(url)
            assert (status, body["status"]) == (200, "ready")


async def test_redis_outage_makes_services_unready_until_it_returns(
    fresh_redis: Server, settings_for: Callable[..., Any]
) -> None:
    redis_url = f"redis://127.0.0.1:{fresh_redis.port}/0"
    apps = {
        name: SERVICES[name][0](settings_for(SERVICES[name][1], redis_url=redis_url))
        for name in REDIS_DEPENDENT
    }
    async with (
        serve_app(apps["upload"]) as upload,
        serve_app(apps["tracking"]) as tracking,
    ):
        urls = [upload, tracking]
        for url in urls:
            await eventually(url, 200)

        await asyncio.to_thread(fresh_redis.stop)
        for url in urls:
            body = await eventually(url, 503)
            assert body["checks"]["redis"]["ok"] is False
            assert body["checks"]["redis"]["error"]

        await asyncio.to_thread(fresh_redis.start)
        for url in urls:
            body = await eventually(url, 200)
            assert body["checks"]["redis"]["ok"] is True


@pytest.mark.parametrize("name", REDIS_OPTIONAL)
async def test_redis_outage_is_reported_but_keeps_core_and_monitor_ready(
    name: str, fresh_redis: Server, settings_for: Callable[..., Any]
) -> None:
    factory, settings_cls, _checks = SERVICES[name]
    redis_url = f"redis://127.0.0.1:{fresh_redis.port}/0"
    async with serve_app(factory(settings_for(settings_cls, redis_url=redis_url))) as url:
        await eventually(url, 200)
        await asyncio.to_thread(fresh_redis.stop)
        deadline = asyncio.get_running_loop().time() + scaled(20)
        while True:
            status, body = await ready_state(url)
            assert status == 200, body
            if body["checks"]["redis"]["ok"] is False:
                break
            assert asyncio.get_running_loop().time() < deadline, body
            await asyncio.sleep(0.2)
        assert body["checks"]["redis"]["required"] is False


async def test_optional_dependency_down_keeps_tracking_ready(
    settings_for: Callable[..., Any],
) -> None:
    dead_mongo = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    settings = settings_for(
        TrackingSettings, mongo_url=dead_mongo, mongo_server_selection_timeout_ms=200
    )
    async with serve_app(create_tracking(settings)) as url:
        body = await eventually(url, 200)
    assert body["checks"]["mongodb"]["ok"] is False
    assert body["checks"]["mongodb"]["required"] is False


async def test_a_service_process_drains_on_sigterm_then_exits(
    backend_env: dict[str, str], tmp_logs: Path
) -> None:
    port = free_port()
    core = python_process(
        "core",
        "tripline.core",
        {**backend_env, "PORT": str(port), "DRAIN_SECONDS": str(scaled(3))},
        http_ok(f"http://127.0.0.1:{port}/health/ready"),
        tmp_logs / "core.log",
    )
    await asyncio.to_thread(core.start)
    try:
        process = core.process
        assert process is not None
        assert process.popen is not None
        os.kill(process.popen.pid, signal.SIGTERM)
        body = await eventually(f"http://127.0.0.1:{port}", 503, timeout_s=5)
        assert body["status"] == "draining"
        code = await asyncio.to_thread(process.popen.wait, scaled(30))
        # uvicorn re-raises the signal it handled once shutdown is complete.
        assert code in (0, -signal.SIGTERM), core.log_tail()
        assert "Application shutdown complete" in core.log_tail()
    finally:
        await asyncio.to_thread(core.stop)


async def test_a_hung_redis_makes_readiness_fail_fast_not_hang(
    fresh_redis: Server, settings_for: Callable[..., Any]
) -> None:
    """SIGSTOP keeps Redis's sockets open while it answers nothing: the hardest case for
    timeouts. Readiness must still answer, unready, and recover once Redis resumes."""
    redis_url = f"redis://127.0.0.1:{fresh_redis.port}/0"
    settings = settings_for(
        UploadSettings, redis_url=redis_url, redis_socket_timeout_s=0.5, health_check_timeout_s=1
    )
    async with serve_app(create_upload(settings)) as upload:
        await eventually(upload, 200)
        assert fresh_redis.process is not None
        fresh_redis.process.pause()
        try:
            for _ in range(3):
                status, body = await ready_state(upload)
                assert status == 503
                assert body["checks"]["redis"]["ok"] is False
        finally:
            fresh_redis.process.resume()
        await eventually(upload, 200)
