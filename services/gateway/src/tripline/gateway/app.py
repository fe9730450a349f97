"""The edge gateway: authenticates, routes the contract's prefixes and proxies WebSockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from tripline.common.app import service_app
from tripline.common.auth import TokenVerifier, bearer_token
from tripline.common.errors import NotFound
from tripline.common.health import Health
from tripline.common.http_client import create_http_client
from tripline.gateway import proxy, wsproxy
from tripline.gateway.routing import ReplicaSet, Upstream, resolve
from tripline.gateway.settings import GatewaySettings
from tripline.gateway.status import StatusProbe

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

# Client libraries this service uses; only these are traced (and imported) at start-up.
INSTRUMENTED_LIBRARIES: tuple[str, ...] = ("httpx",)


def replica_sets(settings: GatewaySettings) -> dict[Upstream, ReplicaSet]:
    return {
        Upstream.CORE: ReplicaSet([settings.core_url]),
        Upstream.UPLOAD: ReplicaSet([settings.upload_url]),
        Upstream.TRACKING: ReplicaSet(settings.tracking_urls),
        Upstream.MONITOR: ReplicaSet([settings.monitor_url]),
    }


def create_app(settings: GatewaySettings) -> Starlette:
    health = Health(timeout_s=settings.health_check_timeout_s)
    replicas = replica_sets(settings)
    verifier = TokenVerifier(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with create_http_client(
            connect_timeout_s=settings.upstream_connect_timeout_s,
            read_timeout_s=settings.upstream_read_timeout_s,
            max_connections=settings.upstream_max_connections,
        ) as client:
            app.state.http = client
            app.state.status = StatusProbe(
                client,
                {name: replica_set.urls for name, replica_set in replicas.items()},
                timeout_s=settings.health_check_timeout_s,
                cache_s=settings.health_cache_s,
            )
            yield

    async def platform_health(request: Request) -> Response:
        status = await request.app.state.status.status()
        return JSONResponse(
            status.as_dict(),
            status_code=503 if status.status == "down" else 200,
            headers={"Cache-Control": "no-store"},
        )

    async def forward_http(request: Request) -> Response:
        upstream = resolve(request.url.path)
        if upstream is None:
            raise NotFound(f"nothing is served at {request.url.path}")
        await verifier.verify(bearer_token(request))
        return await proxy.forward(
            request.app.state.http,
            request,
            replicas[upstream].order(),
            max_body_bytes=settings.max_body_bytes,
        )

    async def forward_websocket(websocket: WebSocket) -> None:
        upstream = resolve(websocket.url.path)
        if upstream is None:
            raise NotFound(f"nothing is served at {websocket.url.path}")
        await verifier.verify(bearer_token(websocket))
        opened = await wsproxy.open_upstream(
            websocket,
            replicas[upstream].order(),
            open_timeout_s=settings.upstream_connect_timeout_s,
        )
        if isinstance(opened, Response):
            await websocket.send_denial_response(opened)
            return
        await websocket.accept(subprotocol=opened.subprotocol)
        await wsproxy.relay(websocket, opened)

    routes = [
        Route("/health", platform_health, methods=["GET"]),
        Route("/api/{path:path}", forward_http, methods=ALL_METHODS),
        WebSocketRoute("/ws/{path:path}", forward_websocket),
    ]
    return service_app(settings, routes=routes, lifespan=lifespan, health=health)
