"""The common shape of every Tripline HTTP service.

A service's ``create_app(settings)`` builds its routes and lifespan, then calls
:func:`service_app`, which adds health, metrics, problem+json error handling, tracing and the
instance header. Clients are opened in the lifespan and kept on ``app.state``; nothing is
created at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Lifespan
from starlette.websockets import WebSocket, WebSocketState

from tripline.common.errors import (
    MethodNotAllowed,
    NotFound,
    ProblemResponse,
    TriplineError,
    problem_body,
    problem_response,
)
from tripline.common.faults import FaultDelay
from tripline.common.health import DependencyCollector, Health, live_endpoint, ready_endpoint
from tripline.common.metrics import HttpMetrics, metrics_endpoint
from tripline.common.middleware import ServiceMiddleware
from tripline.common.settings import ServiceSettings
from tripline.common.tasks import stop_task


def websocket_close_code(status: int) -> int:
    """Application close code for an HTTP-like status: 4000 + status (4401, 4403, 4404...)."""
    return 4000 + status % 1000


async def _reject_websocket(websocket: WebSocket, error: TriplineError) -> None:
    if websocket.client_state == WebSocketState.CONNECTING:
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(problem_response(error))
            return
        await websocket.close(code=websocket_close_code(error.status), reason=error.detail[:120])
    elif websocket.client_state == WebSocketState.CONNECTED:
        await websocket.close(code=websocket_close_code(error.status), reason=error.detail[:120])


async def handle_tripline_error(conn: HTTPConnection, exc: Exception) -> Response | None:
    if not isinstance(exc, TriplineError):
        raise exc
    if isinstance(conn, WebSocket):
        await _reject_websocket(conn, exc)
        return None
    return problem_response(exc, instance=conn.url.path)


async def handle_http_exception(conn: HTTPConnection, exc: Exception) -> Response | None:
    if not isinstance(exc, HTTPException):
        raise exc
    error: TriplineError
    if exc.status_code == 404:
        error = NotFound(f"nothing is served at {conn.url.path}")
    elif exc.status_code == 405:
        error = MethodNotAllowed(str(exc.detail), headers=exc.headers)
    else:
        body = problem_body(
            slug=f"http-{exc.status_code}",
            title=str(exc.detail),
            status=exc.status_code,
            detail=str(exc.detail),
        )
        return ProblemResponse(body, status_code=exc.status_code, headers=exc.headers)
    return await handle_tripline_error(conn, error)


EXCEPTION_HANDLERS: Mapping[Any, Any] = MappingProxyType(
    {
        TriplineError: handle_tripline_error,
        HTTPException: handle_http_exception,
    }
)


def service_app(
    settings: ServiceSettings,
    *,
    routes: Sequence[BaseRoute],
    lifespan: Lifespan[Starlette],
    health: Health,
    registry: CollectorRegistry | None = None,
    middleware: Sequence[Middleware] = (),
) -> Starlette:
    """Assemble a service: its ``routes`` plus health, metrics and the common middleware.

    ``lifespan`` must open the service's clients, register their probes on ``health`` and close
    them on exit. The app's Prometheus registry is ``registry`` (a new one when not given, for a
    service without metrics of its own), also kept as ``app.state.metrics_registry``.
    ``middleware`` runs inside the common layer, before routing (the gateway's hot path).
    """
    registry = registry or CollectorRegistry()
    registry.register(DependencyCollector(health, settings.service_name))
    common_routes = [
        Route("/health/live", live_endpoint, methods=["GET"]),
        Route("/health/ready", ready_endpoint(health), methods=["GET"]),
        Route("/metrics", metrics_endpoint(registry), methods=["GET"]),
    ]
    app = Starlette(
        routes=[*common_routes, *routes],
        lifespan=lifespan,
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    app.state.settings = settings
    app.state.health = health
    app.state.metrics_registry = registry
    for inner in reversed(middleware):
        app.add_middleware(inner.cls, *inner.args, **inner.kwargs)
    if settings.fault_delay_s:
        # Inside the common layer: the delay is part of the latency the metrics record.
        app.add_middleware(FaultDelay, delay_s=settings.fault_delay_s)
    app.add_middleware(
        ServiceMiddleware,
        service=settings.service_name,
        instance=settings.instance_id,
        metrics=HttpMetrics(registry, settings.service_name),
    )
    return app


def run_in_background(stack: AsyncExitStack, work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` (a loop that runs until cancelled) for the life of ``stack``: it is
    cancelled, and awaited, when the stack closes (the app's lifespan ends)."""
    task = asyncio.create_task(work)
    stack.push_async_callback(stop_task, task)
