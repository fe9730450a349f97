from __future__ import annotations

import math
from typing import Any

import pytest

from tripline.loadtest.report_values import (
    CLASS_ORDER,
    PRIORITY_ORDER,
    dig,
    finite,
    mapping,
    ordered,
    records,
)


def test_dig_stops_at_the_first_missing_or_odd_level() -> None:
    value = {"a": {"b": {"c": 1}}, "x": [1]}
    assert dig(value, "a", "b", "c") == 1
    assert dig(value, "a", "z", "c") is None
    assert dig(value, "x", "0") is None
    assert dig(None, "a") is None
    assert dig(value) is value


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3.0), (2.5, 2.5), (True, None), ("1", None), (math.nan, None), (math.inf, None)],
)
def test_finite_accepts_only_finite_numbers(value: Any, expected: float | None) -> None:
    assert finite(value) == expected


def test_finite_rejects_an_int_too_large_for_a_float() -> None:
    assert finite(10**400) is None


def test_mapping_and_records_replace_odd_values_with_empty_ones() -> None:
    assert mapping({"a": 1}) == {"a": 1}
    assert mapping([1]) == {}
    assert records([{"a": 1}, None, "x", {}]) == [{"a": 1}, {}]
    assert records({"a": 1}) == []


def test_ordered_puts_known_names_first_then_the_rest_sorted() -> None:
    names = ["storage", "zeta", "read", "alpha", "critical", "read"]
    assert ordered(names, CLASS_ORDER) == ["critical", "read", "storage", "alpha", "zeta"]
    assert ordered(["low", "normal", "x"], PRIORITY_ORDER) == ["normal", "low", "x"]
    assert ordered([]) == []
