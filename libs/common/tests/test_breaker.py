from __future__ import annotations

import asyncio
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tripline.common.breaker import BreakerState, CircuitBreaker, FailureWindow
from tripline.common.errors import CircuitOpen
from tripline.devstack.fakes import FakeClock

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
Transition = tuple[str, BreakerState, BreakerState]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def changes() -> list[Transition]:
    return []


def make_breaker(clock: FakeClock, changes: list[Transition], **kwargs: Any) -> CircuitBreaker:
    options: dict[str, Any] = {"failure_threshold": 3, "reset_timeout_s": 10.0, **kwargs}
    return CircuitBreaker(
        "payments",
        clock=clock,
        on_change=lambda *change: changes.append(change),
        **options,
    )


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.try_acquire()
        breaker.record_failure()


def trip(breaker: CircuitBreaker, clock: FakeClock) -> None:
    """Open ``breaker`` and let its reset timeout pass, so it is half-open."""
    fail(breaker, breaker.failure_threshold)
    assert breaker.reset_timeout_s is not None
    clock.advance(breaker.reset_timeout_s)
    assert breaker.state is HALF_OPEN


def test_a_new_breaker_is_closed_and_admits_calls(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    assert breaker.state is CLOSED
    assert breaker.retry_after_s() == 0.0
    assert all(breaker.try_acquire() for _ in range(100))
    assert changes == []


def test_consecutive_failures_open_the_breaker(clock: FakeClock, changes: list[Transition]) -> None:
    breaker = make_breaker(clock, changes)
    fail(breaker, 2)
    assert breaker.state is CLOSED
    fail(breaker, 1)
    assert breaker.state is OPEN
    assert changes == [("payments", CLOSED, OPEN)]


def test_a_success_resets_the_failure_count(clock: FakeClock, changes: list[Transition]) -> None:
    breaker = make_breaker(clock, changes)
    fail(breaker, 2)
    assert breaker.try_acquire()
    breaker.record_success()
    fail(breaker, 2)
    assert breaker.state is CLOSED
    fail(breaker, 1)
    assert breaker.state is OPEN


def test_open_refuses_and_counts_down_retry_after(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    fail(breaker, 3)
    assert not breaker.try_acquire()
    assert breaker.retry_after_s() == 10.0
    clock.advance(7.5)
    assert not breaker.try_acquire()
    assert breaker.retry_after_s() == 2.5


def test_open_turns_half_open_exactly_when_the_timeout_has_passed(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    fail(breaker, 3)
    clock.advance(9.75)
    assert breaker.state is OPEN
    clock.advance(0.25)
    assert breaker.state is HALF_OPEN
    assert breaker.retry_after_s() == 0.0
    assert changes == [("payments", CLOSED, OPEN), ("payments", OPEN, HALF_OPEN)]


def test_half_open_admits_only_max_calls_probes(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes, half_open_max_calls=2)
    trip(breaker, clock)
    assert breaker.try_acquire()
    assert breaker.try_acquire()
    assert not breaker.try_acquire()
    assert breaker.retry_after_s() == 10.0
    breaker.release()
    assert breaker.retry_after_s() == 0.0
    assert breaker.try_acquire()
    assert not breaker.try_acquire()
    assert breaker.state is HALF_OPEN


def test_a_probe_success_closes_the_breaker(clock: FakeClock, changes: list[Transition]) -> None:
    breaker = make_breaker(clock, changes)
    trip(breaker, clock)
    assert breaker.try_acquire()
    breaker.record_success()
    assert breaker.state is CLOSED
    assert changes[-1] == ("payments", HALF_OPEN, CLOSED)
    # The failure count starts afresh once closed.
    fail(breaker, 2)
    assert breaker.state is CLOSED


def test_a_probe_failure_reopens_for_a_fresh_timeout(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    trip(breaker, clock)
    clock.advance(4.0)
    assert breaker.try_acquire()
    breaker.record_failure()
    assert breaker.state is OPEN
    assert breaker.retry_after_s() == 10.0
    assert changes[-1] == ("payments", HALF_OPEN, OPEN)
    clock.advance(9.0)
    assert not breaker.try_acquire()
    clock.advance(1.0)
    assert breaker.try_acquire()


def test_outcomes_recorded_while_open_change_nothing(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    assert breaker.try_acquire()
    assert breaker.try_acquire()
    fail(breaker, 3)
    clock.advance(5.0)
    breaker.record_success()
    assert breaker.state is OPEN
    breaker.record_failure()
    assert breaker.retry_after_s() == 5.0
    clock.advance(5.0)
    assert breaker.try_acquire()
    assert not breaker.try_acquire()
    assert changes == [("payments", CLOSED, OPEN), ("payments", OPEN, HALF_OPEN)]


def test_calls_admitted_before_opening_hold_half_open_slots_until_they_finish(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    assert breaker.try_acquire()
    fail(breaker, 3)
    clock.advance(10.0)
    assert breaker.state is HALF_OPEN
    assert not breaker.try_acquire()
    breaker.release()
    assert breaker.try_acquire()


def test_an_outcome_without_an_admitted_call_is_an_error(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    assert breaker.try_acquire()
    breaker.record_success()
    with pytest.raises(RuntimeError, match="never admitted"):
        breaker.record_success()
    with pytest.raises(RuntimeError, match="never admitted"):
        breaker.record_failure()
    with pytest.raises(RuntimeError, match="never admitted"):
        breaker.release()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": 0},
        {"reset_timeout_s": 0.0},
        {"reset_timeout_s": -1.0},
        {"half_open_max_calls": 0},
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        CircuitBreaker("payments", **kwargs)


async def test_call_returns_the_result_and_records_success(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    trip(breaker, clock)

    async def answer() -> int:
        return 42

    assert await breaker.call(answer) == 42
    assert breaker.state is CLOSED


async def test_call_records_failures_and_reraises(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)

    async def broken() -> None:
        raise ConnectionError("refused")

    for _ in range(3):
        with pytest.raises(ConnectionError):
            await breaker.call(broken)
    assert breaker.state is OPEN


async def test_call_counts_an_exception_that_is_not_a_failure_as_success(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    trip(breaker, clock)

    async def rejects() -> None:
        raise LookupError("404")

    with pytest.raises(LookupError):
        await breaker.call(rejects, is_failure=lambda exc: not isinstance(exc, LookupError))
    assert breaker.state is CLOSED


async def test_call_raises_circuit_open_without_calling(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    fail(breaker, 3)
    clock.advance(2.5)
    called = False

    async def tracked() -> None:
        nonlocal called
        called = True

    with pytest.raises(CircuitOpen) as caught:
        await breaker.call(tracked)
    assert not called
    assert caught.value.dependency == "payments"
    assert caught.value.retry_after_s == 7.5
    assert caught.value.headers["Retry-After"] == "8"


async def test_cancelling_a_call_gives_its_probe_slot_back(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    trip(breaker, clock)
    started = asyncio.Event()

    async def hangs() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(breaker.call(hangs))
    await started.wait()
    assert not breaker.try_acquire()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is HALF_OPEN
    assert breaker.try_acquire()


def test_on_change_reports_a_full_cycle(clock: FakeClock, changes: list[Transition]) -> None:
    breaker = make_breaker(clock, changes)
    trip(breaker, clock)
    assert breaker.try_acquire()
    breaker.record_failure()
    clock.advance(10.0)
    assert breaker.try_acquire()
    breaker.record_success()
    assert [(old, new) for _, old, new in changes] == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


@dataclass
class Spec:
    """The breaker's documented behaviour, stated directly: tripped means open or half-open."""

    threshold: int
    timeout: float
    max_calls: int
    failures: int = 0
    tripped_at: float | None = None
    in_flight: int = 0

    def state(self, now: float) -> BreakerState:
        if self.tripped_at is None:
            return CLOSED
        return OPEN if now < self.tripped_at + self.timeout else HALF_OPEN

    def admits(self, now: float) -> bool:
        state = self.state(now)
        return state is CLOSED or (state is HALF_OPEN and self.in_flight < self.max_calls)

    def retry_after(self, now: float) -> float:
        if self.tripped_at is not None and self.state(now) is OPEN:
            return self.tripped_at + self.timeout - now
        return 0.0 if self.admits(now) else self.timeout

    def finish(self, now: float, outcome: str) -> None:
        self.in_flight -= 1
        state = self.state(now)
        if outcome == "release" or state is OPEN:
            return
        if state is HALF_OPEN:
            self.tripped_at = None if outcome == "success" else now
            return
        self.failures = self.failures + 1 if outcome == "failure" else 0
        if self.failures == self.threshold:
            self.tripped_at, self.failures = now, 0


ALLOWED_TRANSITIONS = {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED), (HALF_OPEN, OPEN)}
OUTCOMES = ["success", "failure", "release"]


class BreakerMachine(RuleBasedStateMachine):
    """Drive a breaker and :class:`Spec` with the same steps; they must never disagree.

    Each admitted call is remembered with the half-open period it probed in, if any, so the
    number of concurrent probes is counted from the outside, not taken from either model.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.changes: list[Transition] = []
        self.calls: list[int | None] = []

    @initialize(
        threshold=st.integers(1, 4),
        timeout=st.sampled_from([0.25, 1.0, 2.5, 5.0]),
        max_calls=st.integers(1, 3),
    )
    def build(self, threshold: int, timeout: float, max_calls: int) -> None:
        self.spec = Spec(threshold, timeout, max_calls)
        self.breaker = CircuitBreaker(
            "dep",
            failure_threshold=threshold,
            reset_timeout_s=timeout,
            half_open_max_calls=max_calls,
            clock=self.clock,
            on_change=lambda *change: self.changes.append(change),
        )

    @property
    def half_open_period(self) -> int:
        return sum(1 for _, _, new in self.changes if new is HALF_OPEN)

    def report(self, outcome: str) -> None:
        {
            "success": self.breaker.record_success,
            "failure": self.breaker.record_failure,
            "release": self.breaker.release,
        }[outcome]()

    # Quarter seconds add up exactly, so the spec and the breaker see the same instants.
    @rule(quarters=st.integers(0, 24))
    def advance(self, quarters: int) -> None:
        self.clock.advance(quarters / 4)

    @rule()
    def acquire(self) -> None:
        expected = self.spec.admits(self.clock.now)
        assert self.breaker.try_acquire() is expected
        if expected:
            self.spec.in_flight += 1
            probing = self.breaker.state is HALF_OPEN
            self.calls.append(self.half_open_period if probing else None)

    @precondition(lambda self: self.calls)
    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    def finish(self, data: st.DataObject, outcome: str) -> None:
        self.calls.pop(data.draw(st.integers(0, len(self.calls) - 1)))
        self.report(outcome)
        self.spec.finish(self.clock.now, outcome)

    @precondition(lambda self: not self.calls)
    @rule(outcome=st.sampled_from(OUTCOMES))
    def stray_outcome_is_rejected(self, outcome: str) -> None:
        with pytest.raises(RuntimeError):
            self.report(outcome)

    @invariant()
    def agrees_with_the_spec(self) -> None:
        assert self.breaker.state is self.spec.state(self.clock.now)
        assert self.breaker.retry_after_s() == self.spec.retry_after(self.clock.now)

    @invariant()
    def reports_every_transition_in_order(self) -> None:
        previous = CLOSED
        for name, old, new in self.changes:
            assert name == "dep"
            assert old is previous
            assert (old, new) in ALLOWED_TRANSITIONS
            previous = new
        assert previous is self.breaker.state

    @invariant()
    def probes_never_exceed_the_limit(self) -> None:
        if self.breaker.state is HALF_OPEN:
            probes = [period for period in self.calls if period == self.half_open_period]
            assert len(probes) <= self.spec.max_calls


BreakerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)
TestBreakerMatchesSpec = BreakerMachine.TestCase


# The failure-rate window, open-on-timeout, probe-only recovery and trip().
#
# FailureWindow keeps 30 buckets of window_s / 30 seconds each, so a call counts for at least
# 29/30 of the window and drops out within the whole window. The tests below rely on nothing
# finer: with window_s=30 and the clock on a whole second, buckets are whole seconds, and a call
# made at second t is counted at t + 29 and forgotten at t + 30.

WINDOW_S = 30.0


def succeed(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.try_acquire()
        breaker.record_success()


def rate_breaker(clock: FakeClock, changes: list[Transition], **kwargs: Any) -> CircuitBreaker:
    """A breaker whose consecutive rule is out of reach: only the rate rule can open it."""
    options: dict[str, Any] = {
        "failure_threshold": 1000,
        "failure_rate": 0.5,
        "min_calls": 10,
        "window_s": WINDOW_S,
        **kwargs,
    }
    return make_breaker(clock, changes, **options)


def test_a_dependency_failing_half_its_calls_opens_by_rate(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = rate_breaker(clock, changes)
    # Success, failure, success, failure...: never two failures in a row.
    for _ in range(4):
        succeed(breaker, 1)
        fail(breaker, 1)
    succeed(breaker, 1)
    assert breaker.state is CLOSED  # 4 of 9 failed, and 9 calls are fewer than min_calls.
    fail(breaker, 1)
    assert breaker.state is OPEN  # 5 of 10 failed.
    assert changes == [("payments", CLOSED, OPEN)]
    assert breaker.retry_after_s() == 10.0


def test_a_failure_share_below_the_rate_does_not_open(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = rate_breaker(clock, changes)
    for _ in range(20):
        succeed(breaker, 2)
        fail(breaker, 1)  # One call in three fails: below one half.
    assert breaker.state is CLOSED
    assert changes == []


def test_fewer_than_min_calls_in_the_window_never_open_it(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = rate_breaker(clock, changes)
    fail(breaker, 9)
    assert breaker.state is CLOSED  # Every call failed, but only 9 of the 10 needed.
    clock.advance(WINDOW_S)
    # Half the calls fail for ever, but the window never holds 10 calls: 2 calls every 8 s.
    for _ in range(50):
        succeed(breaker, 1)
        fail(breaker, 1)
        clock.advance(8.0)
    assert breaker.state is CLOSED
    assert changes == []


def test_failures_within_the_window_still_count(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = rate_breaker(clock, changes, min_calls=4)
    fail(breaker, 3)
    clock.advance(WINDOW_S - 1.0)  # 29/30 of the window: the bucket is still counted.
    fail(breaker, 1)
    assert breaker.state is OPEN


def test_failures_older_than_the_window_no_longer_count(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = rate_breaker(clock, changes, min_calls=4)
    fail(breaker, 3)
    clock.advance(WINDOW_S)
    fail(breaker, 1)
    assert breaker.state is CLOSED  # 1 call in the window: the first 3 have left it.
    fail(breaker, 2)
    assert breaker.state is CLOSED
    fail(breaker, 1)
    assert breaker.state is OPEN  # 4 failed calls within the window again.


def test_the_window_starts_afresh_after_a_cycle(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = rate_breaker(clock, changes, min_calls=4)
    fail(breaker, 4)
    clock.advance(10.0)
    assert breaker.try_acquire()
    breaker.record_success()
    assert breaker.state is CLOSED
    # The 4 failures from before are forgotten although they are still inside the window.
    fail(breaker, 3)
    assert breaker.state is CLOSED
    fail(breaker, 1)
    assert breaker.state is OPEN


def test_the_consecutive_rule_still_applies_with_a_rate(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = rate_breaker(clock, changes, failure_threshold=3, failure_rate=1.0, min_calls=100)
    succeed(breaker, 20)
    fail(breaker, 3)
    assert breaker.state is OPEN


def test_a_failure_share_exactly_at_the_rate_opens_it(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = rate_breaker(clock, changes, failure_rate=0.28, min_calls=25)
    succeed(breaker, 18)
    fail(breaker, 7)
    assert breaker.state is OPEN


def test_one_timeout_opens_with_open_on_timeout(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes, open_on_timeout=True)
    succeed(breaker, 5)
    assert breaker.try_acquire()
    breaker.record_timeout()
    assert breaker.state is OPEN
    assert changes == [("payments", CLOSED, OPEN)]
    assert breaker.retry_after_s() == 10.0


def test_a_timeout_without_open_on_timeout_is_an_ordinary_failure(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    for _ in range(2):
        assert breaker.try_acquire()
        breaker.record_timeout()
    assert breaker.state is CLOSED
    fail(breaker, 1)  # Two timeouts and a failure are three failures in a row.
    assert breaker.state is OPEN


def test_a_timeout_without_open_on_timeout_counts_in_the_rate(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = rate_breaker(clock, changes, min_calls=4)
    for _ in range(2):
        succeed(breaker, 1)
        assert breaker.try_acquire()
        breaker.record_timeout()
    assert breaker.state is OPEN


def test_a_timeout_while_half_open_reopens(clock: FakeClock, changes: list[Transition]) -> None:
    breaker = make_breaker(clock, changes)
    trip(breaker, clock)
    assert breaker.try_acquire()
    breaker.record_timeout()
    assert breaker.state is OPEN
    assert changes[-1] == ("payments", HALF_OPEN, OPEN)


def test_a_timeout_without_an_admitted_call_is_an_error(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes, open_on_timeout=True)
    with pytest.raises(RuntimeError, match="never admitted"):
        breaker.record_timeout()
    assert breaker.state is CLOSED


def test_without_reset_timeout_it_stays_open_until_a_probe_succeeds(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes, reset_timeout_s=None)
    fail(breaker, 3)
    for seconds in (10.0, 3600.0, 1e9):
        clock.advance(seconds)
        assert breaker.state is OPEN
        assert not breaker.try_acquire()
        assert breaker.retry_after_s() == CircuitBreaker.PROBE_WAIT_S
    breaker.probe_succeeded()
    assert breaker.state is CLOSED
    assert breaker.retry_after_s() == 0.0
    assert changes == [("payments", CLOSED, OPEN), ("payments", OPEN, CLOSED)]
    # The failure count starts afresh once closed.
    fail(breaker, 2)
    assert breaker.state is CLOSED


async def test_call_without_reset_timeout_refuses_with_the_probe_wait(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes, reset_timeout_s=None)
    fail(breaker, 3)
    clock.advance(1e6)
    called = False

    async def tracked() -> None:
        nonlocal called
        called = True

    with pytest.raises(CircuitOpen) as caught:
        await breaker.call(tracked)
    assert not called
    assert caught.value.retry_after_s == CircuitBreaker.PROBE_WAIT_S


def test_probe_succeeded_on_a_closed_breaker_changes_nothing(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    fail(breaker, 2)
    breaker.probe_succeeded()
    assert breaker.state is CLOSED
    assert changes == []


def test_probe_succeeded_closes_a_breaker_with_a_reset_timeout(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    fail(breaker, 3)
    clock.advance(2.0)
    breaker.probe_succeeded()
    assert breaker.state is CLOSED
    assert changes == [("payments", CLOSED, OPEN), ("payments", OPEN, CLOSED)]
    trip(breaker, clock)
    breaker.probe_succeeded()
    assert breaker.state is CLOSED
    assert changes[-1] == ("payments", HALF_OPEN, CLOSED)


def test_trip_opens_a_closed_breaker(clock: FakeClock, changes: list[Transition]) -> None:
    breaker = make_breaker(clock, changes)
    breaker.trip()
    assert breaker.state is OPEN
    assert not breaker.try_acquire()
    assert breaker.retry_after_s() == 10.0
    assert changes == [("payments", CLOSED, OPEN)]


def test_trip_leaves_an_open_breakers_wait_unchanged(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    fail(breaker, 3)
    clock.advance(4.0)
    breaker.trip()
    assert breaker.state is OPEN
    assert breaker.retry_after_s() == 6.0
    assert changes == [("payments", CLOSED, OPEN)]
    clock.advance(6.0)
    assert breaker.state is HALF_OPEN


def test_trip_reopens_a_half_open_breaker_for_a_fresh_timeout(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    trip(breaker, clock)
    breaker.trip()
    assert breaker.state is OPEN
    assert breaker.retry_after_s() == 10.0
    assert changes[-1] == ("payments", HALF_OPEN, OPEN)


def test_trip_without_reset_timeout_waits_for_the_probe(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes, reset_timeout_s=None)
    breaker.trip()
    clock.advance(1e6)
    breaker.trip()
    assert breaker.state is OPEN
    breaker.probe_succeeded()
    assert breaker.state is CLOSED
    assert changes == [("payments", CLOSED, OPEN), ("payments", OPEN, CLOSED)]


def test_trip_reopens_a_breaker_whose_timeout_passed_unobserved(
    clock: FakeClock, changes: list[Transition]
) -> None:
    breaker = make_breaker(clock, changes)
    fail(breaker, 3)
    clock.advance(15.0)  # Half-open by now, but nothing has looked at the breaker.
    breaker.trip()
    assert breaker.state is OPEN
    assert breaker.retry_after_s() == 10.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_rate": 0.0},
        {"failure_rate": -0.5},
        {"failure_rate": 1.01},
        {"min_calls": 0},
        {"window_s": 0.0},
        {"window_s": -30.0},
    ],
)
def test_invalid_window_settings_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        CircuitBreaker("payments", **kwargs)


def test_a_failure_rate_of_one_is_accepted(clock: FakeClock, changes: list[Transition]) -> None:
    breaker = rate_breaker(clock, changes, failure_rate=1.0, min_calls=3)
    succeed(breaker, 1)
    fail(breaker, 2)
    assert breaker.state is CLOSED  # 2 of 3 failed: not all of them.
    clock.advance(WINDOW_S)
    fail(breaker, 3)
    assert breaker.state is OPEN


def test_failure_window_counts_calls_and_failures_over_time() -> None:
    window = FailureWindow(WINDOW_S)
    assert window.totals(1000.0) == (0, 0)
    window.add(1000.0, failed=True)
    window.add(1000.5, failed=False)
    window.add(1010.25, failed=True)
    window.add(1010.75, failed=True)
    window.add(1020.0, failed=False)
    assert window.totals(1020.0) == (5, 3)
    assert window.totals(1029.75) == (5, 3)  # The calls at second 1000 are 29.75 s old.
    assert window.totals(1030.0) == (3, 2)  # Second 1000's bucket has left the window.
    assert window.totals(1039.75) == (3, 2)
    assert window.totals(1040.0) == (1, 0)
    assert window.totals(1050.0) == (0, 0)
    window.add(1050.0, failed=True)
    assert window.totals(1050.0) == (1, 1)


def test_failure_window_clear_forgets_everything() -> None:
    window = FailureWindow(WINDOW_S)
    for second in range(10):
        window.add(1000.0 + second, failed=second % 2 == 0)
    assert window.totals(1009.0) == (10, 5)
    window.clear()
    assert window.totals(1009.0) == (0, 0)


@pytest.mark.parametrize("window_s", [0.0, -1.0])
def test_failure_window_rejects_a_non_positive_width(window_s: float) -> None:
    with pytest.raises(ValueError, match="window_s"):
        FailureWindow(window_s)


@settings(max_examples=60, deadline=None)
@given(
    window_s=st.sampled_from([7.5, 30.0, 60.0]),
    start=st.integers(0, 10_000),
    ages=st.lists(st.integers(0, 400), min_size=1, max_size=20),
)
def test_failure_window_keeps_each_call_between_29_30ths_and_all_of_the_window(
    window_s: float, start: int, ages: list[int]
) -> None:
    """A call ``age`` seconds old is counted when younger than 29/30 of the window and
    forgotten when at least a whole window old; in between it depends on the bucket edge.
    Times are in quarter seconds, exact in binary, as are the bucket widths used."""
    now = 1000.0 + start / 4
    window = FailureWindow(window_s)
    for age in sorted(ages, reverse=True):
        window.add(now - age / 4, failed=age % 2 == 0)
    calls, failures = window.totals(now)
    surely_in = [age for age in ages if age / 4 < window_s * 29 / 30]
    maybe_in = [age for age in ages if age / 4 < window_s]
    assert len(surely_in) <= calls <= len(maybe_in)
    assert sum(age % 2 == 0 for age in surely_in) <= failures
    assert failures <= sum(age % 2 == 0 for age in maybe_in)


RATES = [None, 0.2, 0.25, 0.5, 0.6, 0.75, 1.0]


@settings(max_examples=100, deadline=None)
@given(
    threshold=st.integers(1, 8),
    rate=st.sampled_from(RATES),
    min_calls=st.integers(1, 12),
    open_on_timeout=st.booleans(),
    steps=st.lists(
        st.tuples(st.sampled_from(["success", "failure", "timeout"]), st.integers(0, 3)),
        max_size=40,
    ),
)
def test_within_one_window_it_opens_exactly_when_a_rule_says_so(
    threshold: int,
    rate: float | None,
    min_calls: int,
    open_on_timeout: bool,
    steps: list[tuple[str, int]],
) -> None:
    """Every outcome falls in one window (40 steps of at most 0.75 s: 30 s, under 29/30 of
    60 s), so the window counts every call; the expected rule is restated here directly."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        "dep",
        failure_threshold=threshold,
        failure_rate=rate,
        min_calls=min_calls,
        window_s=60.0,
        open_on_timeout=open_on_timeout,
        clock=clock,
    )
    failures = in_a_row = 0
    for calls, (outcome, quarters) in enumerate(steps, start=1):
        clock.advance(quarters / 4)
        assert breaker.try_acquire()
        if outcome == "success":
            breaker.record_success()
            in_a_row = 0
            opens = False
        else:
            if outcome == "failure":
                breaker.record_failure()
            else:
                breaker.record_timeout()
            failures += 1
            in_a_row += 1
            opens = (
                in_a_row >= threshold
                or (outcome == "timeout" and open_on_timeout)
                or (
                    rate is not None
                    and calls >= min_calls
                    and Fraction(failures, calls) >= Fraction(str(rate))
                )
            )
        assert breaker.state is (OPEN if opens else CLOSED)
        if opens:
            return
