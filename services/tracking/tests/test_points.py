from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.tracking.points import Point, Rules, distance_m, is_jump, screen

NOW = 1_800_000_000.0
RULES = Rules(max_future_s=5, max_age_s=600, max_speed_mps=70)


def raw(ts: float, lat: float = 52.52, lng: float = 13.405, **extra: Any) -> dict[str, Any]:
    return {"lat": lat, "lng": lng, "ts": ts, **extra}


def test_good_points_are_accepted_oldest_first() -> None:
    screened = screen(
        [raw(NOW - 1), raw(NOW - 3), raw(NOW - 2)], now=NOW, previous=None, rules=RULES
    )
    assert [a.point.ts for a in screened.accepted] == [NOW - 3, NOW - 2, NOW - 1]
    assert screened.rejected == []


@pytest.mark.parametrize(
    ("point", "reason"),
    [
        (raw(NOW, lat=91), "lat"),
        (raw(NOW, lng=-181), "lng"),
        (raw(NOW, heading=360), "heading"),
        (raw(NOW, speed=-1), "speed"),
        (raw(NOW + 60), "future"),
        (raw(NOW - 601), "old"),
        ({"lat": 1, "lng": 2}, "ts"),
        (raw(NOW, altitude=3), "altitude"),
        (raw(float("nan")), "ts"),
    ],
)
def test_each_bad_point_is_refused_with_its_index_and_a_reason(
    point: dict[str, Any], reason: str
) -> None:
    screened = screen([raw(NOW - 1), point], now=NOW, previous=None, rules=RULES)
    assert len(screened.accepted) == 1
    assert screened.rejected[0]["index"] == 1
    assert reason in screened.rejected[0]["reason"]


def test_a_repeated_time_is_refused() -> None:
    screened = screen([raw(NOW - 1), raw(NOW - 1, lat=52.6)], now=NOW, previous=None, rules=RULES)
    assert [r["index"] for r in screened.rejected] == [1]


def test_an_impossible_jump_is_kept_but_flagged() -> None:
    previous = Point(lat=52.52, lng=13.405, ts=NOW - 10)
    screened = screen(
        [raw(NOW - 9, lat=48.85, lng=2.35), raw(NOW - 8, lat=48.8501, lng=2.35)],
        now=NOW,
        previous=previous,
        rules=RULES,
    )
    assert [a.flagged for a in screened.accepted] == [True, False]


def test_a_kilometre_north_is_about_a_kilometre() -> None:
    a = Point(lat=52.0, lng=13.0, ts=1)
    b = Point(lat=52.0 + 1 / 111.2, lng=13.0, ts=2)
    assert 990 < distance_m(a, b) < 1010


@given(
    lat=st.floats(-90, 90),
    lng=st.floats(-180, 180),
    dt=st.floats(1, 3600),
)
def test_standing_still_is_never_a_jump(lat: float, lng: float, dt: float) -> None:
    a = Point(lat=lat, lng=lng, ts=1000)
    b = Point(lat=lat, lng=lng, ts=1000 + dt)
    assert not is_jump(a, b, max_speed_mps=1)
