"""The core service's input models and the shapes of what it returns.

Input models refuse unknown fields and bound every field; they are meant for
:func:`tripline.common.validation.parse_body` and ``parse_query``, which turn a refusal into a
422 naming each field. Bodies take numbers strictly (no strings, no booleans); queries arrive
as text, so their numbers are parsed from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tripline.core.trips import TripStatus

# Rust's regex engine, which pydantic uses, lets \d match any Unicode digit: spell out 0-9.
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
EVENT_NAME_PATTERN = r"^[a-z0-9_.-]+$"
# BSON keys are C strings, and MongoDB treats "$" prefixes and dots in keys as operators and
# paths, so analytics properties keep to keys it stores verbatim.
PROPERTY_KEY_PATTERN = r"^[^$.\x00][^.\x00]*$"
# The last second of year 9999: any later timestamp cannot become a datetime.
MAX_EPOCH_S = 253_402_300_799.0

Latitude = Annotated[float, Field(strict=True, ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(strict=True, ge=-180, le=180, allow_inf_nan=False)]
QueryLatitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
QueryLongitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=E164_PATTERN)]
PropertyKey = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=PROPERTY_KEY_PATTERN)
]
MAX_PROPERTY_CHARS = 1000


def _flat_value(value: object) -> str | int | float | bool | None:
    # One check instead of a union, so a bad value is one error rather than one per member.
    if isinstance(value, str) and len(value) > MAX_PROPERTY_CHARS:
        raise ValueError(f"a string property may be at most {MAX_PROPERTY_CHARS} characters")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a number property must be finite")
    if value is None or isinstance(value, str | int | float):
        return value
    raise ValueError("a property must be a string, a number, a boolean or null")


PropertyValue = Annotated[str | int | float | bool | None, PlainValidator(_flat_value)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Point(Input):
    lat: Latitude
    lng: Longitude


class TripCreate(Input):
    """Body of ``POST /api/trips``."""

    origin: Point
    destination: Point

    @field_validator("destination")
    @classmethod
    def _differs_from_origin(cls, destination: Point, info: ValidationInfo) -> Point:
        if info.data.get("origin") == destination:
            raise ValueError("the destination must differ from the origin")
        return destination


class StatusChange(Input):
    """Body of ``POST /api/trips/{id}/status``."""

    status: TripStatus


class EmergencyContact(Input):
    name: Name
    phone: Phone


class ProfileUpdate(Input):
    """Body of ``PATCH /api/users/me``: the fields to change, at least one, none of them null."""

    name: Name | None = None
    phone: Phone | None = None
    emergency_contact: EmergencyContact | None = None

    @field_validator("name", "phone", "emergency_contact", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # An absent field stays as it is; null would be a third meaning nobody asked for.
        if value is None:
            raise ValueError("leave the field out instead of sending null")
        return value

    @model_validator(mode="after")
    def _changes_something(self) -> ProfileUpdate:
        if not self.model_fields_set:
            raise ValueError("send at least one of name, phone, emergency_contact")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields the client sent, as plain values for a MongoDB ``$set``."""
        return self.model_dump(exclude_unset=True)


class SearchQuery(Input):
    """Query of ``GET /api/trips/search``."""

    lat: QueryLatitude
    lng: QueryLongitude
    radius_km: float = Field(default=5, gt=0, le=50, allow_inf_nan=False)
    limit: int = Field(default=20, ge=1, le=50)
    cursor: str | None = Field(default=None, max_length=200)


class AnalyticsEvent(Input):
    name: str = Field(min_length=1, max_length=64, pattern=EVENT_NAME_PATTERN)
    ts: float = Field(strict=True, ge=0, le=MAX_EPOCH_S, allow_inf_nan=False)
    properties: dict[PropertyKey, PropertyValue] = Field(default_factory=dict, max_length=20)


class AnalyticsBatch(Input):
    """Body of ``POST /api/analytics/events``."""

    events: list[AnalyticsEvent] = Field(min_length=1, max_length=100)


class SosRequest(Input):
    """Body of ``POST /api/trips/{id}/sos``."""

    lat: Latitude
    lng: Longitude
    message: str | None = Field(default=None, max_length=500)


class PaymentRequest(Input):
    """Body of ``POST /api/trips/{id}/payment``."""

    amount_cents: StrictInt = Field(ge=1, le=10_000_000)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    method: Literal["card", "cash", "wallet"]


def geo_point(point: Point) -> dict[str, Any]:
    """The GeoJSON Point MongoDB indexes: note that GeoJSON orders ``coordinates`` [lng, lat]."""
    return {"type": "Point", "coordinates": [point.lng, point.lat]}


def point_view(geojson: Mapping[str, Any]) -> dict[str, float]:
    """``{lat, lng}`` from a GeoJSON Point (whose ``coordinates`` are [lng, lat])."""
    lng, lat = geojson["coordinates"]
    return {"lat": float(lat), "lng": float(lng)}


def iso(moment: datetime) -> str:
    """``moment`` in ISO 8601 UTC; a naive datetime is taken as UTC, as pymongo returns them."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC).isoformat()
    return moment.astimezone(UTC).isoformat()


def trip_view(document: Mapping[str, Any]) -> dict[str, Any]:
    """The API shape of a trip from its MongoDB document.

    Raises ``KeyError`` or ``ValueError`` for a document that is not a trip's.
    """
    driver_id = document.get("driver_id")
    return {
        "id": str(document["_id"]),
        "status": TripStatus(document["status"]).value,
        "rider_id": str(document["rider_id"]),
        "driver_id": None if driver_id is None else str(driver_id),
        "origin": point_view(document["origin"]),
        "destination": point_view(document["destination"]),
        "created_at": iso(document["created_at"]),
        "updated_at": iso(document["updated_at"]),
    }


def profile_view(document: Mapping[str, Any]) -> dict[str, Any]:
    """The API shape of a user profile; fields the user never set are ``None``."""
    contact = document.get("emergency_contact")
    updated_at = document.get("updated_at")
    return {
        "id": str(document["_id"]),
        "role": document.get("role"),
        "name": document.get("name"),
        "phone": document.get("phone"),
        "emergency_contact": (
            None if contact is None else {"name": contact["name"], "phone": contact["phone"]}
        ),
        "updated_at": None if updated_at is None else iso(updated_at),
    }
