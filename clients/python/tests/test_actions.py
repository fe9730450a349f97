"""Critical actions: each builder makes the contract's request, refuses what the platform would,
and an action survives a round trip through JSON unchanged."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline_client import actions
from tripline_client.actions import MAX_POINTS, Action, ActionKind
from tripline_client.errors import ValidationError

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("kind", "queued", "applied"),
    [
        (
            ActionKind.SOS,
            "No connection. Your SOS will be sent as soon as you are back online.",
            "Your SOS was sent.",
        ),
        (
            ActionKind.TRIP_STATUS,
            "No connection. Your trip update will be sent as soon as you are back online.",
            "Your trip update was sent.",
        ),
        (
            ActionKind.LOCATIONS,
            "No connection. Your location will be sent as soon as you are back online.",
            "Your location was sent.",
        ),
        (
            ActionKind.UPLOAD_COMPLETE,
            "No connection. Your document will be submitted as soon as you are back online.",
            "Your document was submitted.",
        ),
    ],
)
def test_each_kind_tells_a_person_what_happens(kind: ActionKind, queued: str, applied: str) -> None:
    assert kind.queued_message == queued
    assert kind.applied_message == applied


def test_sos_posts_the_position_and_message() -> None:
    action = actions.sos("trip-1", 52.52, 13.405, "help", id="a1", now=NOW)
    assert action == Action(
        id="a1",
        kind=ActionKind.SOS,
        method="POST",
        path="/api/trips/trip-1/sos",
        body={"lat": 52.52, "lng": 13.405, "message": "help"},
        created_at=NOW,
        attempts=0,
    )


def test_sos_without_a_message_sends_none() -> None:
    action = actions.sos("trip-1", 0, -180, id="a1", now=NOW)
    assert action.body == {"lat": 0.0, "lng": -180.0}


@pytest.mark.parametrize("status", sorted(actions.TRIP_STATUSES))
def test_trip_status_posts_the_status(status: str) -> None:
    action = actions.trip_status("trip-1", status, id="a1", now=NOW)
    assert (action.kind, action.method, action.path, action.body) == (
        ActionKind.TRIP_STATUS,
        "POST",
        "/api/trips/trip-1/status",
        {"status": status},
    )


def test_locations_posts_the_trip_and_its_points() -> None:
    points: list[dict[str, Any]] = [
        {"lat": 52, "lng": 13, "ts": 10},
        {"lat": 52.1, "lng": 13.1, "ts": 11.5, "heading": 90, "speed": 12.5},
        {"lat": 52.2, "lng": 13.2, "ts": 12, "heading": None, "speed": None},
    ]
    action = actions.locations("trip-1", points, id="a1", now=NOW)
    assert (action.kind, action.method, action.path) == (
        ActionKind.LOCATIONS,
        "POST",
        "/api/tracking/location",
    )
    assert action.body == {
        "trip_id": "trip-1",
        "points": [
            {"lat": 52.0, "lng": 13.0, "ts": 10.0},
            {"lat": 52.1, "lng": 13.1, "ts": 11.5, "heading": 90.0, "speed": 12.5},
            {"lat": 52.2, "lng": 13.2, "ts": 12.0},
        ],
    }


def test_upload_complete_posts_no_body() -> None:
    action = actions.upload_complete("up-1", id="a1", now=NOW)
    assert (action.kind, action.method, action.path, action.body) == (
        ActionKind.UPLOAD_COMPLETE,
        "POST",
        "/api/uploads/up-1/complete",
        None,
    )


def test_path_segments_are_quoted() -> None:
    assert actions.sos("a/b c?", 0, 0, id="a1", now=NOW).path == "/api/trips/a%2Fb%20c%3F/sos"
    assert actions.trip_status("../x", "accepted", id="a1", now=NOW).path == (
        "/api/trips/..%2Fx/status"
    )
    assert actions.upload_complete("u#1", id="a1", now=NOW).path == "/api/uploads/u%231/complete"


def _point(**changes: Any) -> dict[str, Any]:
    return {"lat": 1.0, "lng": 2.0, "ts": 3.0} | changes


@pytest.mark.parametrize(
    ("build", "where"),
    [
        (lambda: actions.sos("t", 90.5, 0, id="a", now=NOW), "lat"),
        (lambda: actions.sos("t", -91, 0, id="a", now=NOW), "lat"),
        (lambda: actions.sos("t", 0, 180.01, id="a", now=NOW), "lng"),
        (lambda: actions.sos("t", math.nan, 0, id="a", now=NOW), "lat"),
        (lambda: actions.sos("t", 0, math.inf, id="a", now=NOW), "lng"),
        (lambda: actions.sos("t", True, 0, id="a", now=NOW), "lat"),
        (lambda: actions.sos("t", "52", 0, id="a", now=NOW), "lat"),  # type: ignore[arg-type]
        (lambda: actions.sos("t", 0, 0, "x" * 501, id="a", now=NOW), "message"),
        (lambda: actions.sos("", 0, 0, id="a", now=NOW), "trip_id"),
        (lambda: actions.sos("t", 0, 0, id="", now=NOW), "id"),
        (lambda: actions.sos("t", 0, 0, id="a b", now=NOW), "id"),
        (lambda: actions.sos("t", 0, 0, id="a\n", now=NOW), "id"),
        (lambda: actions.sos("t", 0, 0, id="é", now=NOW), "id"),
        (lambda: actions.sos("t", 0, 0, id="a" * 256, now=NOW), "id"),
        (lambda: actions.trip_status("t", "flying", id="a", now=NOW), "status"),
        (lambda: actions.trip_status("  ", "accepted", id="a", now=NOW), "trip_id"),
        (lambda: actions.upload_complete("", id="a", now=NOW), "upload_id"),
        (lambda: actions.locations("", [_point()], id="a", now=NOW), "trip_id"),
        (lambda: actions.locations("t", [], id="a", now=NOW), "points"),
        (lambda: actions.locations("t", [_point()] * 101, id="a", now=NOW), "points"),
        (lambda: actions.locations("t", [_point(), {"lat": 1, "lng": 2}], id="a", now=NOW), "ts"),
        (lambda: actions.locations("t", [_point(ts=0)], id="a", now=NOW), "ts"),
        (lambda: actions.locations("t", [_point(lat=95)], id="a", now=NOW), "lat"),
        (lambda: actions.locations("t", [_point(alt=3)], id="a", now=NOW), "alt"),
        (lambda: actions.locations("t", [_point(heading=360)], id="a", now=NOW), "heading"),
        (lambda: actions.locations("t", [_point(speed=-1)], id="a", now=NOW), "speed"),
        (lambda: actions.locations("t", [_point(speed=math.nan)], id="a", now=NOW), "speed"),
    ],
)
def test_inputs_the_platform_would_refuse_are_refused_at_once(build: Any, where: str) -> None:
    with pytest.raises(ValidationError) as raised:
        build()
    assert where in raised.value.detail
    assert raised.value.errors
    assert not raised.value.transient


def test_a_refused_point_is_named_by_its_index() -> None:
    with pytest.raises(ValidationError, match=r"points\[1\]\.lng"):
        actions.locations("t", [_point(), _point(lng=-200)], id="a", now=NOW)


def test_location_batches_split_a_long_track_in_order() -> None:
    points = [_point(ts=float(i + 1)) for i in range(2 * MAX_POINTS + 50)]
    ids = (f"b{n}" for n in itertools.count())
    batches = actions.location_batches("trip-1", points, new_id=lambda: next(ids), now=NOW)
    assert [action.id for action in batches] == ["b0", "b1", "b2"]
    bodies = [action.body for action in batches]
    assert all(body is not None and body["trip_id"] == "trip-1" for body in bodies)
    sizes = [len(body["points"]) for body in bodies if body is not None]
    assert sizes == [MAX_POINTS, MAX_POINTS, 50]
    sent = [point for body in bodies if body is not None for point in body["points"]]
    assert sent == points


def test_location_batches_of_a_short_track_is_one_action() -> None:
    batches = actions.location_batches("trip-1", [_point()], new_id=lambda: "b0", now=NOW)
    assert batches == [actions.locations("trip-1", [_point()], id="b0", now=NOW)]


def test_location_batches_need_a_point() -> None:
    with pytest.raises(ValidationError, match="points"):
        actions.location_batches("trip-1", [], new_id=actions.new_id, now=NOW)


def test_new_ids_are_distinct_idempotency_keys() -> None:
    ids = {actions.new_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in ids)
    some_id = next(iter(ids))
    assert actions.sos("t", 0, 0, id=some_id, now=NOW).id == some_id


_coordinate = st.floats(min_value=-90, max_value=90, allow_nan=False)
_ids = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=64)
_any_action = st.one_of(
    st.builds(
        actions.sos,
        _ids,
        _coordinate,
        _coordinate,
        st.none() | st.text(max_size=500),
        id=_ids,
        now=st.floats(0, 2e9),
    ),
    st.builds(
        actions.trip_status,
        _ids,
        st.sampled_from(sorted(actions.TRIP_STATUSES)),
        id=_ids,
        now=st.floats(0, 2e9),
    ),
    st.builds(
        actions.locations,
        _ids,
        st.lists(
            st.fixed_dictionaries(
                {"lat": _coordinate, "lng": _coordinate, "ts": st.floats(1, 2e9)},
                optional={"heading": st.floats(0, 359), "speed": st.floats(0, 150)},
            ),
            min_size=1,
            max_size=5,
        ),
        id=_ids,
        now=st.floats(0, 2e9),
    ),
    st.builds(actions.upload_complete, _ids, id=_ids, now=st.floats(0, 2e9)),
)


@given(action=_any_action, attempts=st.integers(0, 1000))
def test_an_action_survives_json_unchanged(action: Action, attempts: int) -> None:
    stored = dataclasses.replace(action, attempts=attempts)
    assert Action.from_json(stored.to_json()) == stored


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "{}",
        '{"id": 1, "kind": "sos", "method": "POST", "path": "/", "body": null,'
        ' "created_at": 1, "attempts": 0}',
        '{"id": "a", "kind": "fly", "method": "POST", "path": "/", "body": null,'
        ' "created_at": 1, "attempts": 0}',
        '{"id": "a", "kind": "sos", "method": "POST", "path": "/", "body": [],'
        ' "created_at": 1, "attempts": 0}',
        '{"id": "a", "kind": "sos", "method": "POST", "path": "/", "body": null,'
        ' "created_at": "now", "attempts": 0}',
        "not json",
    ],
)
def test_a_corrupt_record_is_not_an_action(text: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        Action.from_json(text)
