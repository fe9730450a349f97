"""Each alerting rule's reading: when it is active, what it measured against which threshold,
and what an operator reads; a source not yet read gives no reading at all."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.common.health import CheckResult
from tripline.monitor.alerting import Observation, Severity
from tripline.monitor.checks import (
    DependencyBook,
    HealthReport,
    ReplicaHealth,
    ReplicaState,
    build_report,
)
from tripline.monitor.conditions import (
    RULES,
    PoolReading,
    health,
    observe,
    pools,
    queues,
    traffic,
)
from tripline.monitor.queues import BacklogState, QueueState, QueueStatus
from tripline.monitor.series import ServiceSummary
from tripline.monitor.settings import MonitorSettings
from tripline.monitor.targets import Target

NOW = 1_700_000_000.0
SETTINGS = MonitorSettings()
CORE = Target("core", "http://core-1:8081")

RATES = st.one_of(st.none(), st.floats(0, 1))
SECONDS = st.one_of(st.none(), st.floats(0, 10))
THRESHOLDS = st.floats(0.001, 1)


def settings(**overrides: object) -> MonitorSettings:
    return SETTINGS.model_copy(update=overrides)


def one(observations: Iterable[Observation], rule: str, subject: str) -> Observation:
    found = [
        observation
        for observation in observations
        if (observation.rule, observation.subject) == (rule, subject)
    ]
    assert len(found) == 1, f"{len(found)} readings of {rule}:{subject}"
    return found[0]


def queue(name: str = "documents", **fields: object) -> QueueState:
    values: dict[str, object] = {
        "name": name,
        "depth": 0,
        "in_flight": 0,
        "rate_per_min": 0.0,
        "processed_total": 0,
        "failed_last_hour": 0,
        "failed_total": 0,
        "retried_total": 0,
        "oldest_age_s": None,
        "workers": 1,
    }
    values.update(fields)
    return QueueState(**values)  # type: ignore[arg-type]


def status(*states: QueueState, backlogs: dict[str, int] | None = None) -> QueueStatus:
    lengths = backlogs or {}
    return QueueStatus(
        NOW, states, tuple(BacklogState(name, length) for name, length in lengths.items()), 0
    )


def report(
    answers: dict[str, tuple[bool, str | None]], replicas: list[tuple[str, str, ReplicaState]]
) -> HealthReport:
    book = DependencyBook(["mongodb", "redis", "s3", "queues"])
    book.update(
        [CheckResult(name, ok, True, 1.0, error) for name, (ok, error) in answers.items()], NOW
    )
    healths = [ReplicaHealth(Target(service, url), state, 1.0) for service, url, state in replicas]
    return build_report(book, healths, NOW)


@given(
    requests=st.integers(0, 200),
    error_rate=RATES,
    min_requests=st.integers(1, 100),
    threshold=THRESHOLDS,
)
def test_the_error_rate_is_active_iff_enough_requests_failed_above_the_limit(
    requests: int, error_rate: float | None, min_requests: int, threshold: float
) -> None:
    limits = settings(alert_min_requests=min_requests, alert_error_rate=threshold)
    summary = ServiceSummary(requests, error_rate, 0.01)
    reading = one(traffic(limits, {"gateway": summary}), "error_rate", "gateway")
    assert reading.active == (requests >= min_requests and (error_rate or 0.0) > threshold)
    assert reading.threshold == threshold
    assert reading.value == round(error_rate or 0.0, 4)
    assert reading.severity is Severity.CRITICAL


@given(requests=st.integers(0, 200), p95_s=SECONDS, sla_s=st.floats(0.01, 5))
def test_the_p95_is_active_iff_enough_requests_were_slower_than_the_sla(
    requests: int, p95_s: float | None, sla_s: float
) -> None:
    limits = settings(alert_p95_sla_s=sla_s)
    summary = ServiceSummary(requests, 0.0, p95_s)
    reading = one(traffic(limits, {"core": summary}), "latency_p95", "core")
    assert reading.active == (requests >= SETTINGS.alert_min_requests and (p95_s or 0.0) > sla_s)
    assert reading.threshold == sla_s
    assert reading.severity is Severity.WARNING


@pytest.mark.parametrize(
    ("requests", "error_rate", "p95_s", "errors_active", "slow_active"),
    [
        (20, 0.0101, 0.501, True, True),
        (19, 0.5, 5.0, False, False),
        (20, 0.01, 0.5, False, False),
        (0, None, None, False, False),
    ],
)
def test_the_traffic_edges_under_the_default_thresholds(
    requests: int,
    error_rate: float | None,
    p95_s: float | None,
    errors_active: bool,
    slow_active: bool,
) -> None:
    readings = list(traffic(SETTINGS, {"gateway": ServiceSummary(requests, error_rate, p95_s)}))
    assert one(readings, "error_rate", "gateway").active is errors_active
    assert one(readings, "latency_p95", "gateway").active is slow_active


def test_traffic_readings_say_what_failed_or_was_slow() -> None:
    readings = list(traffic(SETTINGS, {"gateway": ServiceSummary(1200, 0.075, 0.65)}))
    errors = one(readings, "error_rate", "gateway")
    assert (errors.value, errors.threshold) == (0.075, 0.01)
    assert errors.summary == "gateway: 7.5% of 1200 requests failed over 5 min (limit 1.0%)"
    slow = one(readings, "latency_p95", "gateway")
    assert (slow.value, slow.threshold) == (0.65, 0.5)
    assert slow.summary == "gateway: p95 650 ms over 5 min (SLA 500 ms)"


def test_no_traffic_reads_as_nothing_wrong() -> None:
    readings = list(traffic(SETTINGS, {"upload": ServiceSummary(0, None, None)}))
    assert [(r.rule, r.active, r.value) for r in readings] == [
        ("error_rate", False, 0.0),
        ("latency_p95", False, 0.0),
    ]


@given(depth=st.integers(0, 5000), limit=st.integers(1, 5000))
def test_a_queue_is_too_deep_iff_more_than_the_limit_wait(depth: int, limit: int) -> None:
    readings = queues(settings(alert_queue_depth=limit), status(queue(depth=depth)))
    reading = one(readings, "queue_depth", "documents")
    assert reading.active == (depth > limit)
    assert (reading.value, reading.threshold) == (depth, limit)


@given(age=st.one_of(st.none(), st.floats(0, 1000)), limit=st.floats(1, 1000))
def test_a_queue_is_too_old_iff_its_oldest_job_waited_longer_than_the_limit(
    age: float | None, limit: float
) -> None:
    readings = queues(settings(alert_queue_age_s=limit), status(queue(oldest_age_s=age)))
    reading = one(readings, "queue_age", "documents")
    assert reading.active == ((age or 0.0) > limit)
    assert reading.threshold == limit


def test_queue_readings_under_the_default_thresholds() -> None:
    readings = list(
        queues(
            SETTINGS,
            status(
                queue("documents", depth=1001, oldest_age_s=301.0, workers=0),
                queue("payments", depth=1000, oldest_age_s=300.0, workers=2),
                backlogs={"tracking:points": 10_001, "core:writes": 10_000},
            ),
        )
    )
    assert {(r.rule, r.subject): r.active for r in readings} == {
        ("queue_depth", "documents"): True,
        ("queue_age", "documents"): True,
        ("no_workers", "documents"): True,
        ("queue_depth", "payments"): False,
        ("queue_age", "payments"): False,
        ("no_workers", "payments"): False,
        ("backlog", "tracking:points"): True,
        ("backlog", "core:writes"): False,
    }
    assert one(readings, "queue_depth", "documents").summary == (
        "queue documents: 1001 waiting (limit 1000)"
    )
    assert one(readings, "queue_age", "documents").summary == (
        "queue documents: the oldest job has waited 301 s (limit 300 s)"
    )
    nobody = one(readings, "no_workers", "documents")
    assert (nobody.severity, nobody.value, nobody.threshold) == (Severity.CRITICAL, 0, 1)
    assert nobody.summary == "queue documents: 0 workers online"
    backlog = one(readings, "backlog", "tracking:points")
    assert backlog.summary == "tracking:points: 10001 entries waiting (limit 10000)"
    assert backlog.severity is Severity.WARNING


def test_a_queue_nobody_has_left_waiting_is_not_too_old() -> None:
    reading = one(queues(SETTINGS, status(queue(oldest_age_s=None))), "queue_age", "documents")
    assert (reading.active, reading.value) == (False, 0.0)


def test_a_dependency_is_down_when_its_latest_check_failed_and_unchecked_ones_say_nothing() -> None:
    readings = list(
        health(
            report(
                {"mongodb": (True, None), "redis": (False, "ConnectionError: refused")},
                [("core", "http://core-1:8081", "ready")],
            )
        )
    )
    down = one(readings, "dependency_down", "redis")
    assert (down.active, down.value, down.severity) == (True, 1.0, Severity.CRITICAL)
    assert down.summary == "redis is not answering: ConnectionError: refused"
    up = one(readings, "dependency_down", "mongodb")
    assert (up.active, up.value, up.summary) == (False, 0.0, "mongodb answers")
    assert {r.subject for r in readings if r.rule == "dependency_down"} == {"mongodb", "redis"}


def test_queues_some_of_which_nobody_consumes_are_degraded_not_unanswering() -> None:
    book = DependencyBook(["queues"])
    error = "QueuesUnconsumed: no live consumer for documents"
    book.update([CheckResult("queues", False, False, 1.0, error)], NOW)
    book.records["queues"].degraded = True
    reading = one(health(build_report(book, [], NOW)), "dependency_down", "queues")
    assert (reading.active, reading.value) == (True, 1.0)
    assert reading.summary == f"queues is degraded: {error}"


def test_a_service_is_unready_while_any_replica_is_critical_when_none_is_ready() -> None:
    readings = list(
        health(
            report(
                {},
                [
                    ("core", "http://core-1:8081", "ready"),
                    ("tracking", "http://tracking-1:8083", "ready"),
                    ("tracking", "http://tracking-2:8085", "draining"),
                    ("upload", "http://upload-1:8082", "unreachable"),
                ],
            )
        )
    )
    core = one(readings, "service_unready", "core")
    assert (core.active, core.value, core.summary) == (False, 0, "core: every replica ready")
    tracking = one(readings, "service_unready", "tracking")
    assert (tracking.active, tracking.value, tracking.severity) == (True, 1, Severity.WARNING)
    assert tracking.summary == (
        "tracking: 1 of 2 replicas not ready (http://tracking-2:8085 draining)"
    )
    upload = one(readings, "service_unready", "upload")
    assert (upload.active, upload.severity) == (True, Severity.CRITICAL)
    assert upload.summary == "upload: 1 of 1 replicas not ready (http://upload-1:8082 unreachable)"


@given(checked_out=st.integers(0, 200), max_size=st.integers(-1, 200), limit=st.floats(0.01, 1))
def test_a_pool_is_too_busy_iff_its_use_is_above_the_limit(
    checked_out: int, max_size: int, limit: float
) -> None:
    readings = list(
        pools(settings(alert_pool_use=limit), [PoolReading(CORE, checked_out, max_size)])
    )
    if max_size <= 0:
        assert readings == []
        return
    [reading] = readings
    assert reading.active == (checked_out / max_size > limit)
    assert reading.threshold == limit


def test_pool_readings_name_the_replica() -> None:
    readings = list(
        pools(
            SETTINGS,
            [
                PoolReading(CORE, 81, 100),
                PoolReading(Target("core", "http://core-2:8081"), 80, 100),
                PoolReading(Target("upload", "http://upload-1:8082"), 3, 0),
            ],
        )
    )
    assert [(r.subject, r.active, r.value) for r in readings] == [
        ("core http://core-1:8081", True, 0.81),
        ("core http://core-2:8081", False, 0.8),
    ]
    assert readings[0].summary == "core http://core-1:8081: MongoDB pool 81.0% in use (limit 80.0%)"
    assert readings[0].severity is Severity.WARNING


def full_inputs() -> tuple[dict[str, ServiceSummary], QueueStatus, HealthReport, list[PoolReading]]:
    summaries = {"gateway": ServiceSummary(100, 0.5, 0.9), "core": ServiceSummary(5, 0.0, 0.1)}
    queue_status = status(
        queue("documents", workers=0), queue("payments"), backlogs={"sos:records": 3}
    )
    health_report = report(
        {"mongodb": (True, None), "redis": (False, "refused")},
        [("core", "http://core-1:8081", "ready"), ("gateway", "http://gw:8080", "unready")],
    )
    return summaries, queue_status, health_report, [PoolReading(CORE, 90, 100)]


def test_observing_everything_reads_every_rule_once_per_subject() -> None:
    summaries, queue_status, health_report, readings = full_inputs()
    observations = observe(
        SETTINGS,
        summaries=summaries,
        queue_status=queue_status,
        report=health_report,
        pool_readings=readings,
    )
    assert {observation.rule for observation in observations} == set(RULES)
    assert Counter(observation.id for observation in observations).most_common(1)[0][1] == 1
    assert sorted(observation.id for observation in observations if observation.active) == [
        "dependency_down:redis",
        "error_rate:gateway",
        "latency_p95:gateway",
        "no_workers:documents",
        "pool_use:core http://core-1:8081",
        "service_unready:gateway",
    ]


def test_a_source_not_yet_read_gives_no_readings_of_its_rules() -> None:
    summaries, queue_status, health_report, readings = full_inputs()
    without_queues = observe(
        SETTINGS,
        summaries=summaries,
        queue_status=None,
        report=health_report,
        pool_readings=readings,
    )
    assert {o.rule for o in without_queues} == set(RULES) - {
        "queue_depth",
        "queue_age",
        "no_workers",
        "backlog",
    }
    without_health = observe(
        SETTINGS,
        summaries=summaries,
        queue_status=queue_status,
        report=None,
        pool_readings=readings,
    )
    assert {o.rule for o in without_health} == set(RULES) - {"dependency_down", "service_unready"}
    nothing = observe(SETTINGS, summaries={}, queue_status=None, report=None, pool_readings=[])
    assert nothing == []


def test_the_thresholds_are_the_monitors_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_QUEUE_DEPTH", "5")
    monkeypatch.setenv("ALERT_BACKLOG", "2")
    configured = MonitorSettings()
    readings = list(queues(configured, status(queue(depth=6), backlogs={"sos:records": 3})))
    depth = one(readings, "queue_depth", "documents")
    assert (depth.active, depth.threshold) == (True, 5)
    assert one(readings, "backlog", "sos:records").active
    assert not one(queues(SETTINGS, status(queue(depth=6))), "queue_depth", "documents").active
