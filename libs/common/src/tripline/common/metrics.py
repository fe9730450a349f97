"""Prometheus metrics per app: request latency histogram and status counters on ``/metrics``.

Each app owns its :class:`CollectorRegistry`, so several apps can run in one process (tests) and
services add their own gauges to the same registry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from starlette.requests import Request
from starlette.responses import Response

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
        # Bound children per (method, route, status): a labels() look-up costs more than the
        # observation itself, and the combinations are few (route labels are templates).
        self._children: dict[tuple[str, str, int], tuple[Histogram, Counter, Counter | None]] = {}

    def record(self, method: str, route: str, status: int, elapsed_s: float) -> None:
        """Count one answered request (``status`` 499 when the client left first)."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.latency.labels(self.service, method, route, str(status)),
                self.responses.labels(self.service, method, route, f"{status // 100}xx"),
                self.errors.labels(self.service, route) if status >= 500 else None,
            )
            self._children[key] = children
        latency, responses, errors = children
        latency.observe(elapsed_s)
        responses.inc()
        if errors is not None:
            errors.inc()


def metrics_endpoint(registry: CollectorRegistry) -> Callable[[Request], Awaitable[Response]]:
    """The ``/metrics`` endpoint: ``registry`` in the Prometheus text format."""

    async def endpoint(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return endpoint
