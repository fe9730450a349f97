"""Tracking's HTTP routes: a driver posts a batch of points; a trip's parties read its latest
location."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tripline.common.errors import NotFound
from tripline.common.validation import parse_body
from tripline.tracking.context import tracking_of
from tripline.tracking.store import TRIP_ID


class LocationBatch(BaseModel):
    """Body of ``POST /api/tracking/location``; each point is screened on its own, so one bad
    point is refused with its index instead of failing the batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trip_id: str = Field(pattern=TRIP_ID.pattern)
    points: list[dict[str, Any]] = Field(min_length=1, max_length=100)


async def post_locations(request: Request) -> Response:
    tracking = tracking_of(request)
    identity, token = await tracking.identity(request)
    batch = await parse_body(request, LocationBatch)
    parties = await tracking.parties.require(identity, token, batch.trip_id)
    if not parties.is_driver(identity):
        # Riders and admins may watch the trip, but only its driver says where it is.
        raise NotFound(f"no trip {batch.trip_id} driven by you")
    recorded = await tracking.intake.record(batch.trip_id, identity.user_id, batch.points)
    return JSONResponse(recorded.body(), status_code=202)


async def trip_location(request: Request) -> Response:
    tracking = tracking_of(request)
    identity, token = await tracking.identity(request)
    trip_id = request.path_params["trip_id"]
    if not TRIP_ID.fullmatch(trip_id):
        raise NotFound("no trip has that id")
    await tracking.parties.require(identity, token, trip_id)
    location = await tracking.store.latest(trip_id)
    if location is None:
        raise NotFound("no location is known for this trip yet")
    return JSONResponse(location)


ROUTES = [
    Route("/api/tracking/location", post_locations, methods=["POST"]),
    Route("/api/tracking/trips/{trip_id}/location", trip_location, methods=["GET"]),
]
