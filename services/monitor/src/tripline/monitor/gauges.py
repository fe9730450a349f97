"""The monitor's own Prometheus gauges: queues, backlogs and alerts, for Prometheus to alert on
(``deploy/prometheus/alerts.yml``) as the monitor itself does."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge

from tripline.monitor.queues import QueueStatus


class MonitorGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, documentation: str, label: str) -> Gauge:
            return Gauge(name, documentation, [label], registry=registry)

        self.depth = gauge("tripline_queue_depth", "Messages waiting in a queue.", "queue")
        self.in_flight = gauge(
            "tripline_queue_in_flight", "Messages taken by a worker, not yet acknowledged.", "queue"
        )
        self.oldest_age = gauge(
            "tripline_queue_oldest_age_seconds",
            "How long the oldest waiting message has waited (0 when none waits).",
            "queue",
        )
        self.rate = gauge(
            "tripline_queue_processed_per_minute",
            "Tasks finished over the last whole minute.",
            "queue",
        )
        self.failed = gauge(
            "tripline_queue_failed_last_hour",
            "Tasks that failed for good in the last hour.",
            "queue",
        )
        self.workers = gauge(
            "tripline_workers_online", "Workers with a recent heartbeat consuming a queue.", "queue"
        )
        self.backlog = gauge(
            "tripline_backlog_length",
            "Accepted work waiting in a Redis stream for a dependency.",
            "backlog",
        )
        self.alerts = gauge("tripline_alerts_active", "Alerts firing now, per rule.", "rule")

    def show_queues(self, status: QueueStatus) -> None:
        for queue in status.queues:
            self.depth.labels(queue.name).set(queue.depth)
            if queue.in_flight is not None:
                self.in_flight.labels(queue.name).set(queue.in_flight)
            self.oldest_age.labels(queue.name).set(queue.oldest_age_s or 0.0)
            self.rate.labels(queue.name).set(queue.rate_per_min)
            self.failed.labels(queue.name).set(queue.failed_last_hour)
            self.workers.labels(queue.name).set(queue.workers)
        for backlog in status.backlogs:
            self.backlog.labels(backlog.name).set(backlog.length)

    def show_alerts(self, rules: Iterable[str], active_rules: Iterable[str]) -> None:
        """Set each of ``rules`` to how many of ``active_rules`` (one entry per alert) it has."""
        counts = dict.fromkeys(rules, 0)
        for rule in active_rules:
            counts[rule] = counts.get(rule, 0) + 1
        for rule, count in counts.items():
            self.alerts.labels(rule).set(count)
