"""The common shape of every Tripline HTTP service.

A service's ``create_app(settings)`` builds its routes and lifespan, then calls
:func:`service_app`, which adds health, metrics, problem+json error handling, tracing and the
instance header. Clients are opened in the lifespan and kept on ``app.state``; nothing is
created at import time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, HTTPConnection
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Lifespan, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState

from tripline.common.errors import (
    MethodNotAllowed,
    NotFound,
    ProblemResponse,
    TriplineError,
    problem_body,
    problem_response,
)
from tripline.common.health import Health, live_endpoint, ready_endpoint
from tripline.common.logs import get_logger
from tripline.common.metrics import HttpMetrics, MetricsMiddleware, metrics_endpoint
from tripline.common.settings import ServiceSettings
from tripline.common.telemetry import current_trace_id, instrument_app

INSTANCE_HEADER = "tripline-instance"

log = get_logger(__name__)


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


class UnexpectedErrorMiddleware:
    """Last resort for exceptions no handler took: log, record on the span, answer a problem.

    It sits inside the tracing, metrics and instance middlewares (Starlette's own last-resort
    handler sits outside them all), so the 500 is counted, carries ``Tripline-Instance`` and
    names the trace to look up; the body leaks nothing of the exception.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] in {"http.response.start", "websocket.accept"}:
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # The client left mid-request: nobody to answer, and not a server error.
            log.info("client disconnected", path=scope.get("path"))
        except Exception as exc:
            span = trace.get_current_span()
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            log.exception("unhandled error", path=scope.get("path"))
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1011, "reason": ""})
            elif not started:
                await self._problem(scope, receive, send)

    @staticmethod
    async def _problem(scope: Scope, receive: Receive, send: Send) -> None:
        body = problem_body(
            slug="internal-error",
            title="Internal error",
            status=500,
            detail="the server failed to handle this request; it has been logged",
            trace_id=current_trace_id(),
        )
        await ProblemResponse(body, status_code=500)(scope, receive, send)


class InstanceHeaderMiddleware:
    """Adds ``Tripline-Instance: <service>/<instance>`` so an operator sees who answered.

    The gateway keeps its upstream's field and adds its own, so a proxied answer lists every
    hop, origin first: ``tracking/tracking-2, gateway/gw-1``.
    """

    def __init__(self, app: ASGIApp, *, value: str) -> None:
        self.app = app
        self.value = value.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"tripline-instance", self.value),
                ]
            await send(message)

        await self.app(scope, receive, send_wrapper)


def service_app(
    settings: ServiceSettings,
    *,
    routes: Sequence[BaseRoute],
    lifespan: Lifespan[Starlette],
    health: Health,
    registry: CollectorRegistry | None = None,
) -> Starlette:
    """Assemble a service: its ``routes`` plus health, metrics and the common middleware.

    ``lifespan`` must open the service's clients, register their probes on ``health`` and close
    them on exit. The app's Prometheus registry is ``registry`` (a new one when not given, for a
    service without metrics of its own), also kept as ``app.state.metrics_registry``.
    """
    registry = registry or CollectorRegistry()
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
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=HttpMetrics(registry, settings.service_name))
    app.add_middleware(
        InstanceHeaderMiddleware, value=f"{settings.service_name}/{settings.instance_id}"
    )
    instrument_app(app, settings.service_name)
    return app
