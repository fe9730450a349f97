"""The tracking service: live trip locations over HTTP and WebSockets.

Only Redis is required for it to be ready: live locations must keep flowing while MongoDB
(history) is away.
"""

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
from tripline.common.mongo import MongoProbe, open_mongo
from tripline.common.redis_client import RedisProbe, open_redis
from tripline.tracking import frames
from tripline.tracking.settings import TrackingSettings
from tripline.tracking.store import LocationStore, check_trip_id

# Client libraries this service uses; only these are traced (and imported) at start-up.
INSTRUMENTED_LIBRARIES: tuple[str, ...] = ("redis", "pymongo")


def create_app(settings: TrackingSettings) -> Starlette:
    health = Health(timeout_s=settings.health_check_timeout_s)
    verifier = TokenVerifier(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_redis(settings) as redis, open_mongo(settings) as mongo:
            app.state.redis = redis
            app.state.mongo = mongo
            app.state.locations = LocationStore(redis)
            health.add("redis", RedisProbe(redis))
            health.add("mongodb", MongoProbe(mongo), required=False)
            yield

    async def trip_location(request: Request) -> Response:
        await verifier.verify(bearer_token(request))
        trip_id = check_trip_id(request.path_params["trip_id"])
        location = await request.app.state.locations.latest(trip_id)
        if location is None:
            raise NotFound("no location is known for this trip yet")
        return JSONResponse(location)

    async def trip_socket(websocket: WebSocket) -> None:
        await verifier.verify(bearer_token(websocket))
        trip_id = check_trip_id(websocket.path_params["trip_id"])
        location = await websocket.app.state.locations.latest(trip_id)
        await websocket.accept()
        seq = int(location["seq"]) if location else 0
        await websocket.send_text(frames.snapshot(seq, location, status=None))
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                frames.parse_client_frame(message.get("text"))
            except frames.FrameError as exc:
                await websocket.send_text(frames.error(exc))
                continue
            await websocket.send_text(frames.pong())

    routes = [
        Route("/api/tracking/trips/{trip_id}/location", trip_location, methods=["GET"]),
        WebSocketRoute("/ws/trips/{trip_id}", trip_socket),
    ]
    return service_app(settings, routes=routes, lifespan=lifespan, health=health)
