"""The platform's plain calls: sent at once through the resilient transport, and failing with
a :class:`~tripline_client.errors.TriplineError` (nothing is queued). :class:`Tripline` adds
the offline queue, connectivity and live tracking on top."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from tripline_client.config import ClientConfig
from tripline_client.errors import UnexpectedResponse
from tripline_client.transport import Transport


class PlainCalls:
    """Profiles, trips, payments, analytics and uploads, through ``transport``."""

    transport: Transport
    config: ClientConfig

    async def me(self) -> dict[str, Any]:
        """The signed-in user's profile."""
        return await self._get("/api/users/me")

    async def update_me(self, **fields: Any) -> dict[str, Any]:
        """Change the profile's ``name``, ``phone`` or ``emergency_contact``; the new profile."""
        return await self._call("PATCH", "/api/users/me", fields)

    async def user(self, user_id: str) -> dict[str, Any]:
        """Someone's profile: id, role and name (everything for admins and the user)."""
        return await self._get(f"/api/users/{segment(user_id)}")

    async def create_trip(
        self, origin: tuple[float, float], destination: tuple[float, float]
    ) -> dict[str, Any]:
        """Request a trip (a rider); the new trip, ``status`` requested."""
        body = {
            "origin": {"lat": origin[0], "lng": origin[1]},
            "destination": {"lat": destination[0], "lng": destination[1]},
        }
        return await self._call("POST", "/api/trips", body)

    async def get_trip(self, trip_id: str) -> dict[str, Any]:
        """The trip, to its rider, its driver and admins; :class:`NotFound` for anyone else."""
        return await self._get(f"/api/trips/{segment(trip_id)}")

    async def search_trips(
        self,
        lat: float,
        lng: float,
        *,
        radius_km: float = 5.0,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Open trips near a point, nearest first: ``{items, next}`` (pass ``next`` as
        ``cursor`` for the following page)."""
        params: dict[str, str | int | float] = {"lat": lat, "lng": lng, "radius_km": radius_km}
        if limit is not None:
            params["limit"] = limit
        if cursor is not None:
            params["cursor"] = cursor
        return await self._get("/api/trips/search", params)

    async def pay(
        self, trip_id: str, *, amount_cents: int, currency: str, method: str
    ) -> dict[str, Any]:
        """Pay for a trip: ``status`` confirmed, or pending (the platform confirms it later).
        Raises :class:`~tripline_client.errors.PaymentDeclined` when the provider refuses."""
        body = {"amount_cents": amount_cents, "currency": currency, "method": method}
        path = f"/api/trips/{segment(trip_id)}/payment"
        response = await self.transport.request(
            "POST", path, json_body=body, timeout_s=self.config.slow_call_timeout_s
        )
        return _object(response.body)

    async def track_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Send analytics events (low priority: the first thing shed when the platform is
        loaded; a failure here is raised, never queued)."""
        await self._call("POST", "/api/analytics/events", {"events": list(events)})

    async def start_upload(
        self, *, doc_type: str, filename: str, content_type: str, size_bytes: int
    ) -> dict[str, Any]:
        """Ask for a presigned upload: ``{upload_id, url, fields, key, expires_at}``."""
        body = {
            "doc_type": doc_type,
            "filename": filename,
            "content_type": content_type,
            "size_bytes": size_bytes,
        }
        return await self._call("POST", "/api/uploads", body)

    async def upload_bytes(self, presign: Mapping[str, Any], data: bytes) -> None:
        """Send the file to storage with the presign from :meth:`start_upload`; then call
        :meth:`complete_upload`. Raises :class:`UnexpectedResponse` for a presign without a
        ``url`` and string ``fields``."""
        url, fields = presign.get("url"), presign.get("fields")
        if not isinstance(url, str) or not isinstance(fields, Mapping):
            raise UnexpectedResponse("the presign has no url or no fields")
        if not all(isinstance(value, str) for value in fields.values()):
            raise UnexpectedResponse("the presign's fields are not all strings")
        content_type = str(fields.get("Content-Type", "application/octet-stream"))
        filename = str(presign.get("key", "upload")).rsplit("/", 1)[-1]
        await self.transport.upload(url, fields, filename, data, content_type)

    async def upload_status(self, upload_id: str) -> dict[str, Any]:
        """The upload's ``status`` (pending_upload, queued, processing, verified, rejected,
        failed), queue position and wait estimate, rejection reason and metadata."""
        return await self._get(f"/api/uploads/{segment(upload_id)}")

    async def _get(
        self, path: str, params: Mapping[str, str | int | float] | None = None
    ) -> dict[str, Any]:
        response = await self.transport.request("GET", path, params=params)
        return _object(response.body)

    async def _call(self, method: str, path: str, body: Any) -> dict[str, Any]:
        response = await self.transport.request(method, path, json_body=body)
        return _object(response.body)


def segment(value: str) -> str:
    """``value`` as one path segment: every reserved character escaped."""
    return quote(value, safe="")


def _object(body: Any) -> dict[str, Any]:
    return body if isinstance(body, dict) else {"value": body}
