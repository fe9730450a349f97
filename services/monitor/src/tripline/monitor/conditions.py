"""What the monitor alerts on: one :class:`Observation` per rule and subject, from the latest
metrics, queue status and health report. Pure: the caller gathers the inputs.

The rules are the owners' plan's (error rate, p95 over the SLA, queue depth, MongoDB pool use)
plus what an operator is woken for anyway: a dependency down, a queue nobody consumes or whose
oldest job waits too long, a service without a ready replica, accepted work piling up.
Thresholds come from :class:`~tripline.monitor.settings.MonitorSettings`; the same rules ship as
Prometheus alerting rules in ``deploy/prometheus/alerts.yml``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tripline.monitor.alerting import Observation, Severity
from tripline.monitor.checks import HealthReport
from tripline.monitor.queues import QueueStatus
from tripline.monitor.series import ServiceSummary
from tripline.monitor.settings import MonitorSettings
from tripline.monitor.targets import Target

RULES = (
    "error_rate",
    "latency_p95",
    "queue_depth",
    "queue_age",
    "no_workers",
    "dependency_down",
    "service_unready",
    "pool_use",
    "backlog",
)


@dataclass(frozen=True)
class PoolReading:
    """One replica's MongoDB pool: connections in use and the pool's maximum."""

    target: Target
    checked_out: float
    max_size: float


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def traffic(
    settings: MonitorSettings, summaries: Mapping[str, ServiceSummary]
) -> Iterator[Observation]:
    window = f"{settings.alert_error_window_s / 60:g} min"
    for service, summary in sorted(summaries.items()):
        enough = summary.requests >= settings.alert_min_requests
        error_rate = summary.error_rate or 0.0
        yield Observation(
            rule="error_rate",
            subject=service,
            active=enough and error_rate > settings.alert_error_rate,
            value=round(error_rate, 4),
            threshold=settings.alert_error_rate,
            summary=(
                f"{service}: {_percent(error_rate)} of {summary.requests} requests failed over "
                f"{window} (limit {_percent(settings.alert_error_rate)})"
            ),
            severity=Severity.CRITICAL,
        )
        p95 = summary.p95_s or 0.0
        yield Observation(
            rule="latency_p95",
            subject=service,
            active=enough and p95 > settings.alert_p95_sla_s,
            value=round(p95, 4),
            threshold=settings.alert_p95_sla_s,
            summary=(
                f"{service}: p95 {p95 * 1000:.0f} ms over {window} "
                f"(SLA {settings.alert_p95_sla_s * 1000:.0f} ms)"
            ),
            severity=Severity.WARNING,
        )


def queues(settings: MonitorSettings, status: QueueStatus) -> Iterator[Observation]:
    for queue in status.queues:
        yield Observation(
            rule="queue_depth",
            subject=queue.name,
            active=queue.depth > settings.alert_queue_depth,
            value=queue.depth,
            threshold=settings.alert_queue_depth,
            summary=(
                f"queue {queue.name}: {queue.depth} waiting (limit {settings.alert_queue_depth})"
            ),
            severity=Severity.WARNING,
        )
        age = queue.oldest_age_s or 0.0
        yield Observation(
            rule="queue_age",
            subject=queue.name,
            active=age > settings.alert_queue_age_s,
            value=round(age, 1),
            threshold=settings.alert_queue_age_s,
            summary=(
                f"queue {queue.name}: the oldest job has waited {age:.0f} s "
                f"(limit {settings.alert_queue_age_s:g} s)"
            ),
            severity=Severity.WARNING,
        )
        yield Observation(
            rule="no_workers",
            subject=queue.name,
            active=queue.workers == 0,
            value=queue.workers,
            threshold=1,
            summary=f"queue {queue.name}: {queue.workers} workers online",
            severity=Severity.CRITICAL,
        )
    for backlog in status.backlogs:
        yield Observation(
            rule="backlog",
            subject=backlog.name,
            active=backlog.length > settings.alert_backlog,
            value=backlog.length,
            threshold=settings.alert_backlog,
            summary=(
                f"{backlog.name}: {backlog.length} entries waiting (limit {settings.alert_backlog})"
            ),
            severity=Severity.WARNING,
        )


def health(report: HealthReport) -> Iterator[Observation]:
    for name, dependency in sorted(report.dependencies.items()):
        if dependency["state"] == "unknown":
            continue
        down = dependency["state"] != "ok"
        yield Observation(
            rule="dependency_down",
            subject=name,
            active=down,
            value=1.0 if down else 0.0,
            threshold=0.0,
            summary=_dependency_summary(name, dependency),
            severity=Severity.CRITICAL,
        )
    for service, replicas in sorted(report.replicas.items()):
        unready = [replica for replica in replicas if not replica.ready]
        yield Observation(
            rule="service_unready",
            subject=service,
            active=bool(unready),
            value=len(unready),
            threshold=0.0,
            summary=(
                f"{service}: {len(unready)} of {len(replicas)} replicas not ready "
                f"({'; '.join(f'{r.target.url} {r.state}' for r in unready)})"
                if unready
                else f"{service}: every replica ready"
            ),
            severity=Severity.CRITICAL if len(unready) == len(replicas) else Severity.WARNING,
        )


def _dependency_summary(name: str, dependency: Mapping[str, Any]) -> str:
    if dependency["state"] == "ok":
        return f"{name} answers"
    # Degraded answers, but not wholly (a queue without a consumer): not "not answering".
    verb = "is degraded" if dependency["state"] == "degraded" else "is not answering"
    return f"{name} {verb}: {dependency['last_error']}"


def pools(settings: MonitorSettings, readings: Sequence[PoolReading]) -> Iterator[Observation]:
    for reading in readings:
        if reading.max_size <= 0:
            continue
        use = reading.checked_out / reading.max_size
        subject = f"{reading.target.service} {reading.target.url}"
        yield Observation(
            rule="pool_use",
            subject=subject,
            active=use > settings.alert_pool_use,
            value=round(use, 3),
            threshold=settings.alert_pool_use,
            summary=(
                f"{subject}: MongoDB pool {_percent(use)} in use "
                f"(limit {_percent(settings.alert_pool_use)})"
            ),
            severity=Severity.WARNING,
        )


def observe(
    settings: MonitorSettings,
    *,
    summaries: Mapping[str, ServiceSummary],
    queue_status: QueueStatus | None,
    report: HealthReport | None,
    pool_readings: Sequence[PoolReading],
) -> list[Observation]:
    """Every observation that can be made from what is known; a source not yet read gives
    none (no data never resolves an alert: see :class:`~tripline.monitor.alerting.AlertEngine`)."""
    observations = [*traffic(settings, summaries), *pools(settings, pool_readings)]
    if queue_status is not None:
        observations.extend(queues(settings, queue_status))
    if report is not None:
        observations.extend(health(report))
    return observations
