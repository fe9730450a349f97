"""MongoDB connection-pool use as Prometheus gauges, from pymongo's pool events.

pymongo reports every connection created, closed, checked out and checked in; counting them
gives how many connections are open and how many are in use right now, which is what "pool use
over 80 %" is measured on (``mongodb_pool_checked_out / mongodb_pool_max``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pymongo import monitoring


class PoolMetrics(monitoring.ConnectionPoolListener, Collector):
    """Listens to one client's pools (pass it in ``event_listeners``) and exports their use.

    Events may arrive from several threads (the worker's thread pool), hence the lock.
    """

    def __init__(self, service: str, max_size: int) -> None:
        self._service = service
        self._max_size = max_size
        self._lock = threading.Lock()
        self._open = 0
        self._checked_out = 0
        self._checkout_failures = 0

    @property
    def checked_out(self) -> int:
        return self._checked_out

    @property
    def open(self) -> int:
        return self._open

    def _add(self, open_delta: int = 0, checked_out_delta: int = 0) -> None:
        with self._lock:
            self._open += open_delta
            self._checked_out += checked_out_delta

    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None:
        self._add(open_delta=1)

    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None:
        self._add(open_delta=-1)

    def connection_checked_out(self, event: monitoring.ConnectionCheckedOutEvent) -> None:
        self._add(checked_out_delta=1)

    def connection_checked_in(self, event: monitoring.ConnectionCheckedInEvent) -> None:
        self._add(checked_out_delta=-1)

    def connection_check_out_failed(self, event: monitoring.ConnectionCheckOutFailedEvent) -> None:
        with self._lock:
            self._checkout_failures += 1

    def pool_created(self, event: monitoring.PoolCreatedEvent) -> None:
        """Nothing to count until connections exist."""

    def pool_ready(self, event: monitoring.PoolReadyEvent) -> None:
        """Nothing to count until connections exist."""

    def pool_cleared(self, event: monitoring.PoolClearedEvent) -> None:
        """Cleared connections are reported closed one by one as they are dropped."""

    def pool_closed(self, event: monitoring.PoolClosedEvent) -> None:
        """Closed connections are reported one by one."""

    def connection_ready(self, event: monitoring.ConnectionReadyEvent) -> None:
        """Counted when created."""

    def connection_check_out_started(
        self, event: monitoring.ConnectionCheckOutStartedEvent
    ) -> None:
        """Counted when it succeeds or fails."""

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["service"]
        values = [self._service]
        for name, documentation, value in (
            ("mongodb_pool_checked_out", "MongoDB connections in use.", self._checked_out),
            ("mongodb_pool_size", "MongoDB connections open.", self._open),
            ("mongodb_pool_max", "The MongoDB pool's maximum size.", self._max_size),
        ):
            gauge = GaugeMetricFamily(name, documentation, labels=labels)
            gauge.add_metric(values, max(0, value))
            yield gauge
        failures = CounterMetricFamily(
            "mongodb_pool_checkout_failures",
            "Requests that could not get a MongoDB connection (wait-queue timeout, pool closed).",
            labels=labels,
        )
        failures.add_metric(values, self._checkout_failures)
        yield failures
