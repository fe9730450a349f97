from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tripline.common.errors import DependencyUnavailable, NotFound
from tripline.tracking.store import LocationStore, check_trip_id, latest_key

ALLOWED = frozenset(string.ascii_letters + string.digits + "_-")
VALID_IDS = st.text(alphabet=sorted(ALLOWED), min_size=1, max_size=64)


def is_valid(trip_id: str) -> bool:
    return 1 <= len(trip_id) <= 64 and all(char in ALLOWED for char in trip_id)


@pytest.mark.parametrize("trip_id", ["1", "trip-1", "T_2", "a" * 64, "-", "_", "AbC-123_xyz"])
def test_valid_trip_ids_are_returned(trip_id: str) -> None:
    assert check_trip_id(trip_id) == trip_id


@pytest.mark.parametrize(
    "trip_id",
    [
        "",
        "a" * 65,
        "trip 1",
        "trip/1",
        "trip.1",
        "trip\n",
        "\ntrip",
        "trip%2F1",
        "..",
        "é",
        "١٢٣",  # Arabic-Indic digits: \d would accept them, the contract does not
        "\uff54\uff52\uff49\uff50",  # fullwidth "trip"
        "trip\x00",
    ],
)
def test_invalid_trip_ids_are_not_found(trip_id: str) -> None:
    with pytest.raises(NotFound) as caught:
        check_trip_id(trip_id)
    assert caught.value.status == 404


@given(VALID_IDS)
def test_every_id_of_the_grammar_is_accepted(trip_id: str) -> None:
    assert check_trip_id(trip_id) == trip_id


@given(st.text(max_size=80))
def test_any_text_is_accepted_exactly_when_it_fits_the_grammar(trip_id: str) -> None:
    if is_valid(trip_id):
        assert check_trip_id(trip_id) == trip_id
    else:
        with pytest.raises(NotFound):
            check_trip_id(trip_id)


@given(VALID_IDS, st.sampled_from(sorted(set(string.printable) - ALLOWED)), st.data())
def test_one_foreign_character_anywhere_is_refused(
    trip_id: str, foreign: str, data: st.DataObject
) -> None:
    at = data.draw(st.integers(min_value=0, max_value=len(trip_id)))
    with pytest.raises(NotFound):
        check_trip_id(trip_id[:at] + foreign + trip_id[at:])


def test_latest_key_names_the_trip() -> None:
    assert latest_key("trip-1") == "tracking:trip:trip-1:latest"


class FakeRedis:
    def __init__(self, values: dict[str, Any] | None = None, error: Exception | None = None):
        self.values = values or {}
        self.error = error
        self.keys: list[str] = []

    async def get(self, key: str) -> Any:
        self.keys.append(key)
        if self.error is not None:
            raise self.error
        return self.values.get(key)


async def test_latest_is_none_when_nothing_is_known() -> None:
    redis = FakeRedis()
    assert await LocationStore(redis).latest("trip-1") is None  # type: ignore[arg-type]
    assert redis.keys == ["tracking:trip:trip-1:latest"]


@pytest.mark.parametrize("encode", [str, str.encode])
async def test_latest_decodes_the_stored_location(encode: Any) -> None:
    location = {"lat": 1.5, "lng": -2.25, "heading": None, "speed": 3.0, "ts": 17.0, "seq": 4}
    redis = FakeRedis({latest_key("t"): encode(json.dumps(location))})
    assert await LocationStore(redis).latest("t") == location  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        '{"lat": 1.5, "lon": -2.25, "seq": 4}',
        '{"lat": 91, "lng": 0, "ts": 1, "seq": 1}',
        '{"lat": 1, "lng": 0, "ts": 1, "seq": -1}',
        "1" * 5000,
    ],
)
async def test_unreadable_stored_data_is_no_location(raw: str) -> None:
    redis = FakeRedis({latest_key("t"): raw})
    assert await LocationStore(redis).latest("t") is None  # type: ignore[arg-type]


@pytest.mark.parametrize("error", [RedisConnectionError("down"), RedisTimeoutError("slow")])
async def test_a_redis_failure_is_dependency_unavailable(error: Exception) -> None:
    store = LocationStore(FakeRedis(error=error))  # type: ignore[arg-type]
    with pytest.raises(DependencyUnavailable) as caught:
        await store.latest("t")
    assert caught.value.dependency == "redis"
    assert caught.value.status == 503
