"""Prometheus metrics per app: request latency histogram and status counters on ``/metrics``.

Each app owns its :class:`CollectorRegistry`, so several apps can run in one process (tests) and
services add their own gauges to the same registry.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tripline.common.routes import handled_route_label

CLIENT_CLOSED = 499
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    """The request metrics every service exports."""

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.registry = registry
        self.service = service
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from request start to the end of the response, per route.",
            ["service", "method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.responses = Counter(
            "http_responses",
            "Responses sent, per route and status class.",
            ["service", "method", "route", "status_class"],
            registry=registry,
        )
        self.errors = Counter(
            "http_server_errors",
            "Responses with a 5xx status, per route.",
            ["service", "route"],
            registry=registry,
        )


class MetricsMiddleware:
    """Pure ASGI middleware recording :class:`HttpMetrics` for every HTTP request."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            self._record(scope, status or 500, time.perf_counter() - started)
            raise
        # No response and no error: the client went away first (nginx's 499).
        self._record(scope, status or CLIENT_CLOSED, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = handled_route_label(scope)
        method = scope.get("method", "GET")
        service = self.metrics.service
        self.metrics.latency.labels(service, method, route, str(status)).observe(elapsed)
        self.metrics.responses.labels(service, method, route, f"{status // 100}xx").inc()
        if status >= 500:
            self.metrics.errors.labels(service, route).inc()


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Awaitable[Response]]:
    """The ``/metrics`` endpoint: ``registry`` in the Prometheus text format."""

    async def endpoint(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return endpoint
