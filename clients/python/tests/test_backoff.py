import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline_client.backoff import Backoff, parse_retry_after

units = st.floats(min_value=0, max_value=1, exclude_max=True)
waits = st.none() | st.floats(min_value=0, max_value=500, allow_nan=False)


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    draw=units,
    retry_after=waits,
    base=st.floats(min_value=0.01, max_value=5),
    cap=st.floats(min_value=5, max_value=120),
)
def test_a_delay_never_exceeds_the_cap_and_never_undercuts_retry_after(
    attempt: int, draw: float, retry_after: float | None, base: float, cap: float
) -> None:
    backoff = Backoff(base_s=base, cap_s=cap)
    delay = backoff.delay(attempt, rand=lambda: draw, retry_after=retry_after)
    if retry_after is not None and retry_after > cap:
        assert delay is None
        return
    assert delay is not None
    assert 0 <= delay <= cap
    assert delay >= (retry_after or 0)
    assert delay <= max(backoff.ceiling(attempt), retry_after or 0)


def test_the_ceiling_doubles_until_the_cap() -> None:
    backoff = Backoff(base_s=0.5, cap_s=5)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    backoff = Backoff(base_s=1, cap_s=60)
    assert backoff.delay(3, rand=lambda: 0.0) == 0
    assert backoff.delay(3, rand=lambda: 0.5) == 2


@pytest.mark.parametrize(
    ("base", "cap", "multiplier"), [(0, 1, 2), (2, 1, 2), (1, 2, 0.5), (-1, 1, 2)]
)
def test_a_nonsense_policy_is_refused(base: float, cap: float, multiplier: float) -> None:
    with pytest.raises(ValueError, match="base_s"):
        Backoff(base_s=base, cap_s=cap, multiplier=multiplier)


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        Backoff().ceiling(0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        (" 2 ", 2.0),
        ("0", 0.0),
        ("-3", 0.0),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 60.0),
        ("Thu, 01 Jan 1970 00:00:01 GMT", 0.0),
        ("soon", None),
        ("", None),
        ("nan", None),
        ("inf", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date(
    header: str | None, expected: float | None
) -> None:
    result = parse_retry_after(header, now=40.0)
    if expected is None:
        assert result is None
    else:
        assert result is not None
        assert math.isclose(result, expected)


def test_a_capped_copy_keeps_the_policy_but_the_longest_wait() -> None:
    backoff = Backoff(base_s=1, cap_s=15, multiplier=3)
    assert backoff.capped(120) == Backoff(base_s=1, cap_s=120, multiplier=3)
    assert backoff.capped(0.1).cap_s == 1
