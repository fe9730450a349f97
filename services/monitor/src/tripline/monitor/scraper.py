"""Scrapes every target's ``/metrics`` into a :class:`~tripline.monitor.series.MetricsStore`.

httpx serves here: a handful of targets every few seconds is far from the concurrency at
which its connection pool costs CPU (see ECOSYSTEM.md); measured, the GETs of a round cost a
third of what parsing the pages does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import httpx

from tripline.common.logs import get_logger
from tripline.common.tasks import every
from tripline.monitor.series import MetricsStore, Scrape, parse_scrape
from tripline.monitor.targets import Target

log = get_logger(__name__)


class ScrapeError(Exception):
    """Why a target's metrics could not be had: the message the admin view shows."""


class Scraper:
    """Scrapes ``targets`` with ``client`` (owned by the caller) and records each outcome in
    ``store``, timed by ``clock`` at the start of the scrape as Prometheus does."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        targets: Iterable[Target],
        store: MetricsStore,
        *,
        timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._targets = tuple(targets)
        self._store = store
        self._timeout_s = timeout_s
        self._clock = clock

    async def scrape_once(self) -> None:
        """Scrape every target at once; returns within about ``timeout_s`` whatever the targets
        do. A failure is recorded in the store, never raised."""
        await asyncio.gather(*(self._scrape(target) for target in self._targets))

    async def run(self, interval_s: float) -> None:
        """Scrape every ``interval_s`` seconds until cancelled; a round that overruns its
        interval is followed at once by the next one rather than by a burst of catch-ups."""
        await every(interval_s, self.scrape_once, name="monitor scrape")

    async def _scrape(self, target: Target) -> None:
        started_at = self._clock()
        try:
            self._store.record(target, started_at, await self._fetch(target))
        except ScrapeError as error:
            self._store.record_failure(target, started_at, str(error))
        except Exception as error:
            # The parser is not ours: whatever one page makes it raise, the other targets and
            # the next rounds must still be scraped.
            log.exception("scrape failed", service=target.service, url=target.url)
            self._store.record_failure(target, started_at, _describe(error))

    async def _fetch(self, target: Target) -> Scrape:
        try:
            # httpx's timeout bounds each read, not the whole answer: a trickling server
            # would hold the round back.
            async with asyncio.timeout(self._timeout_s):
                response = await self._client.get(f"{target.url}/metrics")
        except TimeoutError:
            raise ScrapeError(f"no answer within {self._timeout_s:g} s") from None
        except httpx.HTTPError as error:
            raise ScrapeError(_describe(error)) from error
        if response.status_code != httpx.codes.OK:
            raise ScrapeError(f"HTTP {response.status_code} from /metrics")
        try:
            # The parser is pure Python, tens of milliseconds for a service's page: on the loop
            # it would stall the monitor's own answers and health checks that long per target.
            return await asyncio.to_thread(parse_scrape, response.text)
        except ValueError as error:
            raise ScrapeError(f"unreadable metrics: {error}") from error


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
