from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.common.histograms import histogram_quantile

INF = math.inf


# Quantiles


def test_quantile_interpolates_inside_the_bucket_from_zero() -> None:
    buckets = [(0.1, 10.0), (0.2, 20.0), (INF, 20.0)]

    assert histogram_quantile(0.25, buckets) == pytest.approx(0.05)
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.15)
    assert histogram_quantile(1.0, buckets) == pytest.approx(0.2)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.95, [(0.1, 1.0), (0.5, 2.0), (INF, 10.0)]) == 0.5


def test_quantile_q0_is_the_start_of_the_first_bucket_holding_an_observation() -> None:
    assert histogram_quantile(0.0, [(0.1, 0.0), (0.2, 0.0), (0.4, 5.0), (INF, 5.0)]) == 0.2


def test_quantile_of_nothing_is_none() -> None:
    assert histogram_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None
    assert histogram_quantile(0.5, [(INF, 4.0)]) is None


def test_quantile_raises_counts_that_go_down_between_bounds() -> None:
    assert histogram_quantile(0.5, [(0.1, 4.0), (0.2, 3.0), (INF, 4.0)]) == pytest.approx(0.05)


@pytest.mark.parametrize("q", [-0.1, 1.1, math.nan])
def test_quantile_outside_0_1_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        histogram_quantile(q, [(0.1, 1.0), (INF, 1.0)])


def test_quantile_needs_an_inf_bucket() -> None:
    with pytest.raises(ValueError, match=r"\+Inf"):
        histogram_quantile(0.5, [(0.1, 1.0), (0.2, 2.0)])


@st.composite
def histograms(draw: st.DrawFn) -> list[tuple[float, float]]:
    """Cumulative buckets with positive, distinct finite bounds and at least one observation."""
    bounds = draw(
        st.lists(
            st.floats(min_value=1e-4, max_value=1e3, allow_nan=False),
            min_size=1,
            max_size=12,
            unique=True,
        )
    )
    counts = draw(
        st.lists(st.integers(0, 1000), min_size=len(bounds) + 1, max_size=len(bounds) + 1)
    )
    if sum(counts) == 0:
        counts[0] = 1
    cumulative = [float(sum(counts[: i + 1])) for i in range(len(counts))]
    return list(zip([*sorted(bounds), INF], cumulative, strict=True))


quantiles = st.floats(min_value=0.0, max_value=1.0)


@given(histograms(), quantiles, quantiles)
def test_quantile_is_monotone_in_q(buckets: list[tuple[float, float]], a: float, b: float) -> None:
    low, high = sorted((a, b))
    low_value, high_value = histogram_quantile(low, buckets), histogram_quantile(high, buckets)
    assert low_value is not None
    assert high_value is not None
    assert low_value <= high_value


@given(histograms(), quantiles)
def test_quantile_stays_inside_the_bucket_of_its_rank(
    buckets: list[tuple[float, float]], q: float
) -> None:
    value = histogram_quantile(q, buckets)
    assert value is not None
    rank = q * buckets[-1][1]
    index = next(i for i, (_, count) in enumerate(buckets) if count >= rank and count > 0)
    if index == len(buckets) - 1:
        assert value == buckets[-2][0]
    else:
        lower = buckets[index - 1][0] if index else 0.0
        assert lower <= value <= buckets[index][0]
