"""The chaos suite's judgement: windows, percentiles, the SOS-after-first-timeout rule and the
verdicts a row carries, on hand-made attempts."""

from __future__ import annotations

import pytest

from tripline.loadtest.chaos.figures import (
    Check,
    percentile,
    row,
    sos_after_first_timeout,
    verdicts,
    within,
)
from tripline.loadtest.chaos.records import Attempt, Log, Timeline

NO_LOSS = {"sos": 0, "payments": 0}


def sos(sent_at: float, latency_s: float, *, ok: bool = True) -> Attempt:
    return Attempt("sos", sent_at, latency_s, 202 if ok else 503, ok)


def location(sent_at: float, latency_s: float = 0.01, *, ok: bool = True) -> Attempt:
    return Attempt("location", sent_at, latency_s, 202 if ok else 0, ok)


def timeline(recovered_after: float | None = 2.0) -> Timeline:
    recovered = None if recovered_after is None else 120 + recovered_after
    return Timeline(fault_start=100, fault_end=120, recovered_at=recovered)


def failed(checks: list[Check]) -> set[str]:
    return {c.name for c in checks if not c.ok}


def test_nearest_rank_percentiles() -> None:
    assert percentile([], 0.99) is None
    assert percentile([3.0], 0.99) == 3.0
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.5) == 50.0
    assert percentile(reversed(values), 1.0) == 100.0


def test_the_window_holds_what_was_sent_inside_it() -> None:
    attempts = [location(99.9), location(100), location(110), location(120), location(120.1)]
    assert [a.sent_at for a in within(attempts, 100, 120)] == [100, 110, 120]


def test_sos_latency_is_measured_after_the_first_slow_one_has_answered() -> None:
    during = [sos(100, 2.5), sos(100.5, 2.0), sos(101, 1.6), sos(103, 0.05), sos(104, 0.08)]

    after = sos_after_first_timeout(during, end=120)

    assert after.p99_s == pytest.approx(0.08)
    assert (after.sent, after.failed, after.ok) == (2, 0, True)
    assert "2 SOS after it" in after.how


def test_a_failed_sos_counts_as_the_first_timeout() -> None:
    during = [sos(100, 0.01, ok=False), sos(100.5, 1.2)]
    after = sos_after_first_timeout(during, end=120)
    assert after.p99_s == pytest.approx(1.2)
    assert not after.ok


def test_a_fast_refusal_after_the_first_timeout_is_no_fast_sos() -> None:
    during = [sos(100, 3.0)] + [sos(104 + n / 10, 0.02, ok=n % 2 == 0) for n in range(10)]
    after = sos_after_first_timeout(during, end=120)
    assert (after.sent, after.failed, after.ok, after.p99_ms) == (10, 5, False, None)
    assert after.said() == "5 of 10 SOS refused or unanswered"


def test_no_sos_after_the_first_slow_one_is_no_measurement() -> None:
    after = sos_after_first_timeout([sos(100, 25.0), sos(101, 24.0)], end=120)
    assert after.p99_s is None
    assert not after.ok
    assert after.said() == "no SOS measured"


def test_without_a_slow_sos_every_sos_counts() -> None:
    after = sos_after_first_timeout([sos(100, 0.2), sos(101, 0.3)], end=120)
    assert after.p99_s == pytest.approx(0.3)
    assert after.how == "no SOS was slow"


def test_a_healthy_fault_passes_every_check() -> None:
    during = [sos(100 + n / 2, 0.05) for n in range(40)] + [location(100 + n) for n in range(20)]
    checks = verdicts(
        during=during, timeline=timeline(), lost=NO_LOSS, twice=NO_LOSS, recovery_bound_s=60
    )
    assert failed(checks) == set()


def test_one_failure_in_a_few_hundred_breaks_the_critical_promise() -> None:
    during = [location(100 + n / 10) for n in range(199)] + [location(119.95, ok=False)]
    checks = verdicts(
        during=during, timeline=timeline(), lost=NO_LOSS, twice=NO_LOSS, recovery_bound_s=60
    )
    assert "critical" in failed(checks)
    [critical] = [c for c in checks if c.name == "critical"]
    assert "199 of 200" in critical.message


def test_loss_duplicates_and_no_recovery_are_each_named() -> None:
    during = [sos(100, 0.05)]
    checks = verdicts(
        during=during,
        timeline=timeline(recovered_after=None),
        lost={"sos": 1, "payments": 0},
        twice={"sos": 0, "payments": 2},
        recovery_bound_s=60,
    )
    assert failed(checks) == {"lost", "twice", "recovery"}
    messages = {c.name: c.message for c in checks}
    assert "(sos 1)" in messages["lost"]
    assert "(payments 2)" in messages["twice"]


def test_recovery_past_the_bound_fails() -> None:
    checks = verdicts(
        during=[sos(100, 0.05)],
        timeline=timeline(recovered_after=61),
        lost=NO_LOSS,
        twice=NO_LOSS,
        recovery_bound_s=60,
    )
    assert failed(checks) == {"recovery"}


def test_a_row_carries_the_figures_of_the_fault_and_of_the_baseline() -> None:
    attempts = [sos(95, 0.02), sos(100, 3.0), sos(104, 0.1), location(110, ok=False)]
    made = row(
        fault="redis-hang",
        description="Redis hung",
        attempts=attempts,
        timeline=timeline(),
        baseline_s=10,
        accepted={"sos": 3},
        lost=NO_LOSS,
        twice=NO_LOSS,
        recovery_bound_s=60,
        settle_s=4.2,
        extra={"notes": ["n"]},
    )
    assert made["critical_during"]["all"]["sent"] == 3
    assert made["critical_success"] == pytest.approx(2 / 3, abs=1e-4)
    assert made["critical_before"]["all"]["sent"] == 1
    assert made["sos_p99_after_first_timeout_ms"] == 100.0
    assert made["recovery_s"] == 2.0
    assert made["ok"] is False
    assert made["notes"] == ["n"]


def test_the_log_counts_which_replica_answered() -> None:
    log = Log()
    log.answered_by("core/core-2, gateway/gateway")
    log.answered_by("core/core-2")
    log.answered_by("")
    assert dict(log.instances) == {"core/core-2": 2}
