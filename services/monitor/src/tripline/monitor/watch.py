"""The monitor's background looks at the platform, and the latest of each.

Health is looked at every ``HEALTH_INTERVAL_S`` and queues every scrape interval, in the
background: the endpoints answer from the latest look, so a flood of ``/health`` calls costs
nothing and a hung dependency costs its timeout once per look, never once per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from tripline.common.health import Health
from tripline.common.logs import get_logger
from tripline.common.tasks import every
from tripline.monitor.checks import (
    ConsumerCheck,
    DependencyBook,
    HealthReport,
    ReplicaProber,
    build_report,
    queues_detail,
    queues_state,
)
from tripline.monitor.queues import QueueReader, QueueStatus

log = get_logger(__name__)


@dataclass(frozen=True)
class QueueLook:
    """The latest queue status that could be read, and the error of the latest read if it
    failed (then ``status`` is older than the look)."""

    status: QueueStatus | None
    error: str | None


class Watch:
    """Runs the looks and keeps their results; ``on_queues`` hears of each queue status read.

    ``consumers`` is the queues' probe registered in ``health``, whose reading each health
    look turns into the queues' state and detail.
    """

    def __init__(
        self,
        health: Health,
        prober: ReplicaProber,
        queues: QueueReader,
        *,
        read_timeout_s: float,
        on_queues: Callable[[QueueStatus], None] = lambda _status: None,
        consumers: ConsumerCheck | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._health = health
        self._consumers = consumers
        self._prober = prober
        self._queues = queues
        self._read_timeout_s = read_timeout_s
        self._on_queues = on_queues
        self._clock = clock
        self.book = DependencyBook(name for name in ("mongodb", "redis", "s3", "queues"))
        self.report: HealthReport | None = None
        self.queue_look = QueueLook(None, None)

    async def look_at_health(self) -> HealthReport:
        """Check every dependency and replica concurrently (each within its timeout)."""
        results, replicas = await asyncio.gather(self._health.check(), self._prober.check())
        now = self._clock()
        self.book.update(results, now)
        latest = self._consumers.latest if self._consumers is not None else None
        queues = self.book.records["queues"]
        queues.degraded = not queues.ok and queues_state(latest) == "degraded"
        queues.detail = queues_detail(latest, self.queue_look.status)
        self.report = build_report(self.book, replicas, now)
        return self.report

    async def look_at_queues(self) -> QueueLook:
        """Read the queues, unless the latest health look found Redis down: then the last
        status is served as it is (a hung Redis must not cost every caller its timeout)."""
        redis = self.book.records["redis"]
        if redis.checked and not redis.ok:
            self.queue_look = QueueLook(self.queue_look.status, redis.last_error)
            return self.queue_look
        try:
            status = await asyncio.wait_for(self._queues.read(), timeout=self._read_timeout_s)
        except (RedisError, OSError, TimeoutError) as exc:
            self.queue_look = QueueLook(self.queue_look.status, f"{type(exc).__name__}: {exc}")
            return self.queue_look
        self.queue_look = QueueLook(status, None)
        self._on_queues(status)
        return self.queue_look

    async def run_health(self, interval_s: float) -> None:
        """Look at health every ``interval_s`` until cancelled."""
        await every(interval_s, self.look_at_health, name="monitor health look")

    async def run_queues(self, interval_s: float) -> None:
        await every(interval_s, self.look_at_queues, name="monitor queues look")
