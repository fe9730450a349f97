from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tripline.common.breaker import BreakerState, CircuitBreaker
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
