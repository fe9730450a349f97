"""The alerting loop: observe, let the engine decide, deliver what it decided."""

from __future__ import annotations

import time
from collections.abc import Callable

from tripline.common.tasks import every
from tripline.monitor.alerting import AlertEngine, Notice
from tripline.monitor.conditions import RULES, PoolReading, observe
from tripline.monitor.gauges import MonitorGauges
from tripline.monitor.series import MetricsStore
from tripline.monitor.settings import MonitorSettings
from tripline.monitor.watch import Watch
from tripline.monitor.webhook import AlertNotifier


def pool_readings(store: MetricsStore) -> list[PoolReading]:
    """Each scraped replica's MongoDB pool use, from its latest successful scrape."""
    maxima = {target: value for target, _labels, value in store.latest_gauges("mongodb_pool_max")}
    return [
        PoolReading(target, checked_out, maxima[target])
        for target, _labels, checked_out in store.latest_gauges("mongodb_pool_checked_out")
        if target in maxima
    ]


class Evaluator:
    def __init__(
        self,
        settings: MonitorSettings,
        *,
        watch: Watch,
        store: MetricsStore,
        engine: AlertEngine,
        notifier: AlertNotifier,
        gauges: MonitorGauges,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._watch = watch
        self._store = store
        self._engine = engine
        self._notifier = notifier
        self._gauges = gauges
        self._clock = clock

    async def evaluate_once(self) -> list[Notice]:
        """Evaluate every rule now and deliver the resulting notices (delivery is bounded by
        the notifier's timeouts and never raises); returns the notices."""
        now = self._clock()
        observations = observe(
            self._settings,
            summaries=self._store.service_summaries(self._settings.alert_error_window_s, now),
            queue_status=self._watch.queue_look.status,
            report=self._watch.report,
            pool_readings=pool_readings(self._store),
        )
        notices = self._engine.evaluate(observations, now)
        self._gauges.show_alerts(RULES, (alert.rule for alert in self._engine.active()))
        await self._notifier.deliver(notices)
        return notices

    async def run(self, interval_s: float) -> None:
        """Evaluate every ``interval_s`` until cancelled, the first time after one interval; a
        failed evaluation is logged and the next one still runs."""
        await every(interval_s, self.evaluate_once, name="alert evaluation", delay_first=True)
