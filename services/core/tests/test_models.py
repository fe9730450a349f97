from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from starlette.datastructures import QueryParams

from tripline.common.errors import ValidationFailed
from tripline.common.validation import parse_query, validate
from tripline.core.models import (
    AnalyticsBatch,
    PaymentRequest,
    Point,
    ProfileUpdate,
    SearchQuery,
    SosRequest,
    StatusChange,
    TripCreate,
    geo_point,
    profile_view,
    trip_view,
)
from tripline.core.trips import TripStatus

HERE = {"lat": 52.52, "lng": 13.405}
THERE = {"lat": 48.8566, "lng": 2.3522}


def refused_at(model: type[BaseModel], data: object) -> set[str]:
    """The ``loc`` of every error when ``data`` is refused; fails the test if it is accepted."""
    with pytest.raises(ValidationFailed) as caught:
        validate(model, data)
    assert caught.value.status == 422
    return {error["loc"] for error in caught.value.extra["errors"]}


def event(**overrides: Any) -> dict[str, Any]:
    return {"name": "app.opened", "ts": 1_700_000_000.5, "properties": {}, **overrides}


@pytest.mark.parametrize(
    "data", [{"lat": 0, "lng": 0}, {"lat": -90, "lng": 180}, {"lat": 90.0, "lng": -180.0}, HERE]
)
def test_point_accepts_coordinates_in_range(data: dict[str, Any]) -> None:
    point = validate(Point, data)

    assert (point.lat, point.lng) == (data["lat"], data["lng"])


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"lat": 90.0001, "lng": 0}, "lat"),
        ({"lat": 0, "lng": -180.5}, "lng"),
        ({"lat": math.nan, "lng": 0}, "lat"),
        ({"lat": 0, "lng": math.inf}, "lng"),
        ({"lat": True, "lng": 0}, "lat"),
        ({"lat": 0, "lng": "13.4"}, "lng"),
        ({"lat": None, "lng": 0}, "lat"),
        ({"lng": 0}, "lat"),
        ({**HERE, "alt": 30}, "alt"),
    ],
)
def test_point_refuses(data: dict[str, Any], field: str) -> None:
    assert refused_at(Point, data) == {field}


@given(
    st.one_of(
        st.floats(min_value=90, exclude_min=True),
        st.floats(max_value=-90, exclude_max=True),
        st.sampled_from([math.nan, math.inf, -math.inf]),
    ),
    st.floats(-180, 180),
)
def test_any_latitude_out_of_range_is_refused(lat: float, lng: float) -> None:
    assert refused_at(Point, {"lat": lat, "lng": lng}) == {"lat"}
    assert refused_at(SosRequest, {"lat": lat, "lng": lng}) == {"lat"}
    with pytest.raises(ValidationFailed):
        parse_query(QueryParams({"lat": str(lat), "lng": str(lng)}), SearchQuery)


@given(
    st.floats(-90, 90),
    st.one_of(
        st.floats(min_value=180, exclude_min=True),
        st.floats(max_value=-180, exclude_max=True),
        st.sampled_from([math.nan, math.inf, -math.inf]),
    ),
)
def test_any_longitude_out_of_range_is_refused(lat: float, lng: float) -> None:
    assert refused_at(Point, {"lat": lat, "lng": lng}) == {"lng"}
    assert refused_at(SosRequest, {"lat": lat, "lng": lng}) == {"lng"}
    with pytest.raises(ValidationFailed):
        parse_query(QueryParams({"lat": str(lat), "lng": str(lng)}), SearchQuery)


def test_trip_create_takes_two_points() -> None:
    trip = validate(TripCreate, {"origin": HERE, "destination": THERE})

    assert trip.origin == Point(**HERE)
    assert trip.destination == Point(**THERE)


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        ({"origin": HERE, "destination": HERE}, {"destination"}),
        ({"origin": {"lat": 91, "lng": 0}, "destination": THERE}, {"origin.lat"}),
        ({"origin": HERE}, {"destination"}),
        ({"origin": HERE, "destination": THERE, "rider_id": "r9"}, {"rider_id"}),
        ([HERE, THERE], {"body"}),
    ],
)
def test_trip_create_refuses(data: object, fields: set[str]) -> None:
    assert refused_at(TripCreate, data) == fields


@pytest.mark.parametrize("status", list(TripStatus))
def test_status_change_takes_every_status(status: TripStatus) -> None:
    assert validate(StatusChange, {"status": status.value}).status is status


@pytest.mark.parametrize("data", [{"status": "ACCEPTED"}, {"status": "paid"}, {}, {"status": 1}])
def test_status_change_refuses(data: dict[str, Any]) -> None:
    assert refused_at(StatusChange, data) == {"status"}


def test_profile_update_trims_and_keeps_only_what_was_sent() -> None:
    update = validate(ProfileUpdate, {"name": "  Ada Lovelace ", "phone": " +442071234567"})

    assert update.changes() == {"name": "Ada Lovelace", "phone": "+442071234567"}


def test_profile_update_takes_an_emergency_contact_alone() -> None:
    contact = {"name": "Grace", "phone": "+14155550123"}

    assert validate(ProfileUpdate, {"emergency_contact": contact}).changes() == {
        "emergency_contact": contact
    }


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        ({}, {"body"}),
        ({"name": "   "}, {"name"}),
        ({"name": "x" * 101}, {"name"}),
        ({"name": None}, {"name"}),
        ({"phone": "4155550123"}, {"phone"}),
        ({"phone": "+0155550123"}, {"phone"}),
        ({"phone": "+123456"}, {"phone"}),
        ({"phone": "+1234567890123456"}, {"phone"}),
        ({"phone": "+1٣٣٣٣٣٣٣"}, {"phone"}),
        ({"emergency_contact": {"name": "Grace"}}, {"emergency_contact.phone"}),
        ({"emergency_contact": {"name": "", "phone": "+14155550123"}}, {"emergency_contact.name"}),
        ({"role": "admin"}, {"role"}),
    ],
)
def test_profile_update_refuses(data: dict[str, Any], fields: set[str]) -> None:
    assert refused_at(ProfileUpdate, data) == fields


def test_search_query_parses_text_and_fills_defaults() -> None:
    query = parse_query(QueryParams("lat=52.5&lng=13.4"), SearchQuery)

    assert (query.lat, query.lng, query.radius_km, query.limit, query.cursor) == (
        52.5,
        13.4,
        5,
        20,
        None,
    )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("lat=52.5&lng=13.4&radius_km=0", "radius_km"),
        ("lat=52.5&lng=13.4&radius_km=50.01", "radius_km"),
        ("lat=52.5&lng=13.4&radius_km=nan", "radius_km"),
        ("lat=52.5&lng=13.4&limit=0", "limit"),
        ("lat=52.5&lng=13.4&limit=51", "limit"),
        ("lat=52.5&lng=13.4&limit=2.5", "limit"),
        ("lat=52.5&lng=13.4&cursor=" + "c" * 201, "cursor"),
        ("lat=north&lng=13.4", "lat"),
        ("lng=13.4", "lat"),
        ("lat=52.5&lng=13.4&sort=asc", "sort"),
    ],
)
def test_search_query_refuses(text: str, field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_query(QueryParams(text), SearchQuery)

    assert {error["loc"] for error in caught.value.extra["errors"]} == {field}


def test_analytics_batch_takes_events_with_flat_properties() -> None:
    properties = {"screen": "map", "count": 3, "ratio": 0.5, "first": True, "ref": None}
    batch = validate(AnalyticsBatch, {"events": [event(properties=properties), event()]})

    assert batch.events[0].properties == properties
    assert isinstance(batch.events[0].properties["first"], bool)
    assert len(batch.events) == 2


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        ({"events": []}, {"events"}),
        ({"events": [event()] * 101}, {"events"}),
        ({"events": [event(name="App.Opened")]}, {"events.0.name"}),
        ({"events": [event(name="")]}, {"events.0.name"}),
        ({"events": [event(name="a" * 65)]}, {"events.0.name"}),
        ({"events": [event(ts="1700000000")]}, {"events.0.ts"}),
        ({"events": [event(ts=-1)]}, {"events.0.ts"}),
        ({"events": [event(ts=math.inf)]}, {"events.0.ts"}),
        ({"events": [event(properties={f"k{i}": i for i in range(21)})]}, {"events.0.properties"}),
        (
            {"events": [event(properties={"k" * 65: 1})]},
            {f"events.0.properties.{'k' * 65}.[key]"},
        ),
        ({"events": [event(properties={"$where": 1})]}, {"events.0.properties.$where.[key]"}),
        ({"events": [event(properties={"a.b": 1})]}, {"events.0.properties.a.b.[key]"}),
        ({"events": [event(properties={"": 1})]}, {"events.0.properties..[key]"}),
        ({"events": [event(properties={"s": "x" * 1001})]}, {"events.0.properties.s"}),
        ({"events": [event(properties={"nested": {"a": 1}})]}, {"events.0.properties.nested"}),
        ({"events": [event(properties={"list": [1]})]}, {"events.0.properties.list"}),
        ({"events": [event(properties={"x": math.nan})]}, {"events.0.properties.x"}),
        ({"events": [event(extra=1)]}, {"events.0.extra"}),
    ],
)
def test_analytics_batch_refuses(data: dict[str, Any], fields: set[str]) -> None:
    assert refused_at(AnalyticsBatch, data) == fields


def test_sos_request_takes_an_optional_message() -> None:
    assert validate(SosRequest, HERE).message is None
    assert validate(SosRequest, {**HERE, "message": "help"}).message == "help"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**HERE, "message": "x" * 501}, "message"),
        ({**HERE, "message": 5}, "message"),
        ({"lat": 100, "lng": 0}, "lat"),
    ],
)
def test_sos_request_refuses(data: dict[str, Any], field: str) -> None:
    assert refused_at(SosRequest, data) == {field}


@pytest.mark.parametrize("method", ["card", "cash", "wallet"])
def test_payment_request_takes_each_method(method: str) -> None:
    payment = validate(PaymentRequest, {"amount_cents": 1250, "currency": "EUR", "method": method})

    assert (payment.amount_cents, payment.currency, payment.method) == (1250, "EUR", method)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"amount_cents": 0}, "amount_cents"),
        ({"amount_cents": 10_000_001}, "amount_cents"),
        ({"amount_cents": 12.5}, "amount_cents"),
        ({"amount_cents": "1250"}, "amount_cents"),
        ({"amount_cents": True}, "amount_cents"),
        ({"currency": "eur"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"method": "cheque"}, "method"),
    ],
)
def test_payment_request_refuses(overrides: dict[str, Any], field: str) -> None:
    data = {"amount_cents": 1250, "currency": "EUR", "method": "card", **overrides}

    assert refused_at(PaymentRequest, data) == {field}


def test_geo_point_puts_longitude_first() -> None:
    assert geo_point(Point(lat=52.5, lng=13.4)) == {"type": "Point", "coordinates": [13.4, 52.5]}


def trip_document(origin: Point, destination: Point, **overrides: Any) -> dict[str, Any]:
    return {
        "_id": "t1",
        "status": "accepted",
        "rider_id": "r1",
        "driver_id": "d1",
        "origin": geo_point(origin),
        "destination": geo_point(destination),
        "created_at": datetime(2024, 5, 1, 12, 0, 0),
        "updated_at": datetime(2024, 5, 1, 14, 30, 0, tzinfo=timezone(timedelta(hours=2))),
        **overrides,
    }


@given(
    st.builds(Point, lat=st.floats(-90, 90), lng=st.floats(-180, 180)),
    st.builds(Point, lat=st.floats(-90, 90), lng=st.floats(-180, 180)),
)
def test_trip_view_returns_the_points_geo_point_stored(origin: Point, destination: Point) -> None:
    view = trip_view(trip_document(origin, destination))

    assert validate(Point, view["origin"]) == origin
    assert validate(Point, view["destination"]) == destination


def test_trip_view_shapes_a_trip_for_the_api() -> None:
    document = trip_document(Point(**HERE), Point(**THERE), driver_id=None)

    assert trip_view(document) == {
        "id": "t1",
        "status": "accepted",
        "rider_id": "r1",
        "driver_id": None,
        "origin": HERE,
        "destination": THERE,
        # pymongo hands back naive datetimes in UTC; aware ones are converted to UTC.
        "created_at": "2024-05-01T12:00:00+00:00",
        "updated_at": "2024-05-01T12:30:00+00:00",
    }


def test_trip_view_refuses_a_document_with_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="teleported"):
        trip_view(trip_document(Point(**HERE), Point(**THERE), status="teleported"))


def test_profile_view_fills_what_the_user_never_set() -> None:
    assert profile_view({"_id": "u1", "role": "rider"}) == {
        "id": "u1",
        "role": "rider",
        "name": None,
        "phone": None,
        "emergency_contact": None,
        "updated_at": None,
    }


def test_profile_view_shows_a_full_profile() -> None:
    document = {
        "_id": "u1",
        "role": "driver",
        "name": "Ada",
        "phone": "+442071234567",
        "emergency_contact": {"name": "Grace", "phone": "+14155550123"},
        "updated_at": datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC),
        "internal_note": "not for clients",
    }

    assert profile_view(document) == {
        "id": "u1",
        "role": "driver",
        "name": "Ada",
        "phone": "+442071234567",
        "emergency_contact": {"name": "Grace", "phone": "+14155550123"},
        "updated_at": "2024-05-01T12:00:00+00:00",
    }
