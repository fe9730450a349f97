from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tripline.worker.retrying import backoff_s


@given(attempt=st.integers(0, 1000), rand=st.floats(0, 1))
def test_the_backoff_stays_within_the_upper_half_of_its_capped_ceiling(
    attempt: int, rand: float
) -> None:
    ceiling = min(30.0, 0.5 * 2.0**attempt)
    delay = backoff_s(attempt, base_s=0.5, max_s=30.0, rand=lambda: rand)
    assert ceiling / 2 <= delay <= ceiling


def test_the_backoff_doubles_until_the_cap() -> None:
    delays = [backoff_s(n, base_s=1.0, max_s=8.0, rand=lambda: 1.0) for n in range(6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
