from hypothesis import given
from hypothesis import strategies as st

from tripline_client.budget import RetryBudget


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def budget(clock: FakeClock, draw: float = 0.5) -> RetryBudget:
    return RetryBudget(clock=clock, rand=lambda: draw, k=2, window_s=120, grace=2)


def test_a_healthy_platform_leaves_every_retry_allowed() -> None:
    clock = FakeClock()
    throttle = budget(clock, draw=0.0)
    for _ in range(50):
        throttle.record(accepted=True)
    for _ in range(10):
        throttle.record(accepted=False)
    assert throttle.rejection_probability() == 0
    assert throttle.allow_retry()


def test_an_outage_stops_nearly_every_retry() -> None:
    clock = FakeClock()
    throttle = budget(clock, draw=0.9)
    for _ in range(100):
        throttle.record(accepted=False)
    assert throttle.rejection_probability() > 0.95
    assert not throttle.allow_retry()


def test_a_fresh_client_may_retry_its_first_blips() -> None:
    throttle = budget(FakeClock(), draw=0.0)
    throttle.record(accepted=False)
    throttle.record(accepted=False)
    assert throttle.rejection_probability() == 0


def test_old_failures_leave_the_window() -> None:
    clock = FakeClock()
    throttle = budget(clock)
    for _ in range(100):
        throttle.record(accepted=False)
    clock.advance(121)
    assert throttle.rejection_probability() == 0


@given(st.lists(st.tuples(st.booleans(), st.floats(min_value=0, max_value=30)), max_size=200))
def test_the_probability_stays_in_its_bounds(events: list[tuple[bool, float]]) -> None:
    clock = FakeClock()
    throttle = budget(clock)
    for accepted, pause in events:
        throttle.record(accepted=accepted)
        clock.advance(pause)
        assert 0 <= throttle.rejection_probability() < 1
