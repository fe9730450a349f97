"""The monitor's endpoints: the admin views (through the gateway at the same paths, or straight
to the monitor inside the cluster; either way an admin token is checked here) and the short
platform status the gateway relays on ``GET /health``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tripline.common.auth import Role, TokenVerifier, bearer_token
from tripline.common.errors import DependencyUnavailable
from tripline.common.validation import parse_query
from tripline.monitor.alerting import AlertEngine
from tripline.monitor.checks import HealthReport
from tripline.monitor.series import MetricsStore
from tripline.monitor.settings import MonitorSettings
from tripline.monitor.watch import Watch

NO_STORE = {"Cache-Control": "no-store"}
# Charts get about this many points whatever the window.
CHART_POINTS = 60


@dataclass(frozen=True)
class Monitor:
    """What the endpoints share for the life of the app."""

    settings: MonitorSettings
    verifier: TokenVerifier
    watch: Watch
    store: MetricsStore
    alerts: AlertEngine

    async def require_admin(self, request: Request) -> None:
        """Raise :class:`Unauthorized` or :class:`Forbidden` unless the caller is an admin."""
        identity = await self.verifier.verify(bearer_token(request))
        identity.require(Role.ADMIN)


def monitor_of(request: Request) -> Monitor:
    monitor: Monitor = request.app.state.monitor
    return monitor


class MetricsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_s: int = Field(default=300, ge=10, le=86_400)


def _json(body: dict[str, Any]) -> Response:
    return JSONResponse(body, headers=NO_STORE)


def _latest_look(monitor: Monitor) -> HealthReport:
    """The latest health look; raises 503 before the first one has finished."""
    report = monitor.watch.report
    if report is None:
        raise DependencyUnavailable("monitor", "the monitor has not finished its first look")
    return report


async def platform_status(request: Request) -> Response:
    """The latest look, short: what the gateway relays on ``/health``."""
    return _json(_latest_look(monitor_of(request)).summary())


async def admin_health(request: Request) -> Response:
    monitor = monitor_of(request)
    await monitor.require_admin(request)
    return _json(_latest_look(monitor).as_dict())


async def queue_status(request: Request) -> Response:
    """A fresh read of the queues; the last one (marked stale, with the error) when Redis
    cannot be read, and 503 when it never could."""
    monitor = monitor_of(request)
    await monitor.require_admin(request)
    look = await monitor.watch.look_at_queues()
    if look.status is None:
        raise DependencyUnavailable("redis", f"the queues cannot be read: {look.error}")
    return _json({**look.status.as_dict(), "stale": look.error is not None, "error": look.error})


async def metrics_summary(request: Request) -> Response:
    monitor = monitor_of(request)
    await monitor.require_admin(request)
    query = parse_query(request.query_params, MetricsQuery)
    window_s = min(float(query.window_s), monitor.settings.metrics_history_s)
    # Two scrapes per step at least: a step that happens to hold no scrape has no point.
    step_s = max(2 * monitor.settings.scrape_interval_s, window_s / CHART_POINTS)
    return _json(monitor.store.report(window_s, time.time(), step_s))


async def alerts(request: Request) -> Response:
    monitor = monitor_of(request)
    await monitor.require_admin(request)
    return _json(monitor.alerts.as_dict())


def monitor_routes() -> list[Route]:
    return [
        Route("/internal/status", platform_status, methods=["GET"]),
        Route("/api/admin/health", admin_health, methods=["GET"]),
        Route("/api/admin/queues/status", queue_status, methods=["GET"]),
        Route("/api/admin/metrics", metrics_summary, methods=["GET"]),
        Route("/api/admin/alerts", alerts, methods=["GET"]),
    ]
