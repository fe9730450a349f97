"""An error burst through a real gateway fires the error-rate alert once, to a real webhook
receiver, and resolves it once the errors stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tripline.common.auth import Role
from tripline.devstack.harness import serve_app
from tripline.devstack.ports import free_port
from tripline.devstack.testing import auth, eventually
from tripline.gateway.app import create_app as create_gateway
from tripline.gateway.settings import GatewaySettings
from tripline.monitor.app import create_app as create_monitor
from tripline.monitor.settings import MonitorSettings
from tripline.tracking.app import create_app as create_tracking
from tripline.tracking.settings import TrackingSettings

pytestmark = pytest.mark.integration

ALERT = "error_rate:gateway"
BURST = 30


def webhook_receiver(received: list[dict[str, Any]]) -> Starlette:
    async def hook(request: Request) -> Response:
        received.append(await request.json())
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


def about(payload: dict[str, Any]) -> str:
    """The alert id a Slack-style notice is about (its ``Alert`` field)."""
    fields = payload["attachments"][0]["fields"]
    return str(next(field["value"] for field in fields if field["title"] == "Alert"))


def notices(received: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    return [body for body in received if about(body) == ALERT and body["text"].startswith(tag)]


async def test_an_error_burst_fires_once_and_resolves(settings_for: Callable[..., Any]) -> None:
    received: list[dict[str, Any]] = []
    dead_core = f"http://127.0.0.1:{free_port()}"
    monitor_port = free_port()
    async with (
        serve_app(webhook_receiver(received)) as hooks,
        serve_app(create_tracking(settings_for(TrackingSettings))) as tracking,
    ):
        gateway_settings = settings_for(
            GatewaySettings,
            core_url=dead_core,
            tracking_urls=[tracking],
            monitor_url=f"http://127.0.0.1:{monitor_port}",
            breaker_failure_threshold=1000,
        )
        async with serve_app(create_gateway(gateway_settings)) as gateway:
            monitor_settings = settings_for(
                MonitorSettings,
                monitor_targets=[f"gateway={gateway}"],
                scrape_interval_s=0.5,
                alert_eval_interval_s=0.5,
                alert_error_window_s=5,
                alert_min_requests=10,
                alert_repeat_s=3600,
                alert_for_s=0,
                alert_webhook_url=f"{hooks}/hook",
            )
            async with (
                serve_app(create_monitor(monitor_settings), port=monitor_port),
                httpx.AsyncClient(base_url=gateway, timeout=10) as client,
            ):
                rider = auth("burst-rider", Role.RIDER)
                answers = [
                    (await client.get(f"/api/trips/t{n}", headers=rider)).status_code
                    for n in range(BURST)
                ]
                assert all(status >= 500 for status in answers), answers

                async def fired() -> list[dict[str, Any]] | None:
                    return notices(received, "[FIRING]") or None

                (firing,) = await eventually(fired, timeout_s=20)
                assert "gateway" in firing["text"]

                # Requests that succeed, until the burst has left the 5 s window.
                admin = auth("ops", Role.ADMIN)

                async def resolved() -> list[dict[str, Any]] | None:
                    answer = await client.get("/api/admin/alerts", headers=admin)
                    assert answer.status_code == 200, answer.text
                    return notices(received, "[RESOLVED]") or None

                await eventually(resolved, timeout_s=30)
                # A few more evaluations: nothing fires again, nothing resolves twice.
                await asyncio.sleep(2)
                assert len(notices(received, "[FIRING]")) == 1
                assert len(notices(received, "[RESOLVED]")) == 1
                assert notices(received, "[STILL FIRING]") == []

                listed = (await client.get("/api/admin/alerts", headers=admin)).json()
                assert ALERT not in [alert["id"] for alert in listed["active"]]
                (recent,) = [alert for alert in listed["recent"] if alert["id"] == ALERT]
                assert recent["state"] == "resolved"
                assert recent["value"] == 0
