from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from itertools import pairwise

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tripline.common.metrics import HttpMetrics, metrics_endpoint
from tripline.devstack.fakes import FakeClock
from tripline.devstack.harness import scaled, serve_app
from tripline.devstack.ports import free_port
from tripline.monitor.scraper import Scraper
from tripline.monitor.series import MetricsStore, Scrape
from tripline.monitor.targets import Target

pytestmark = pytest.mark.integration

TRIP = "/api/trips/{trip_id}"


class Service:
    """A service's metrics as it would export them, served over real HTTP."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = HttpMetrics(self.registry, "core")
        self.sockets = Gauge("tracking_open_sockets", "", registry=self.registry)

    def app(self) -> Starlette:
        async def broken(_request: Request) -> Response:
            return PlainTextResponse("unavailable", status_code=503)

        async def not_metrics(_request: Request) -> Response:
            return PlainTextResponse("<html>a proxy's error page</html>\n")

        return Starlette(
            routes=[
                Route("/metrics", metrics_endpoint(self.registry)),
                Route("/broken/metrics", broken),
                Route("/html/metrics", not_metrics),
            ]
        )


class TimedStore(MetricsStore):
    """Notes on the loop's clock when each target's outcome was recorded."""

    def __init__(self) -> None:
        super().__init__(900)
        self.recorded_at: dict[Target, float] = {}

    def record(self, target: Target, t: float, scrape: Scrape) -> None:
        self.recorded_at[target] = asyncio.get_running_loop().time()
        super().record(target, t, scrape)

    def record_failure(self, target: Target, t: float, error: str) -> None:
        self.recorded_at[target] = asyncio.get_running_loop().time()
        super().record_failure(target, t, error)


@pytest.fixture
async def service() -> AsyncIterator[tuple[Service, str]]:
    metrics = Service()
    async with serve_app(metrics.app()) as url:
        yield metrics, url


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def targets_by_url(store: MetricsStore) -> dict[str, dict[str, object]]:
    """Each target's scrape state (its gauges are checked in test_series)."""
    return {
        target["url"]: {name: value for name, value in target.items() if name != "gauges"}
        for target in store.report(60, now=0, step_s=60)["targets"]
    }


async def test_scraped_requests_reach_the_summaries(
    service: tuple[Service, str], client: httpx.AsyncClient
) -> None:
    metrics, url = service
    target = Target("core", url)
    store = MetricsStore(900)
    clock = FakeClock(1000.0)
    scraper = Scraper(client, [target], store, timeout_s=scaled(5), clock=clock)
    metrics.sockets.set(12)

    await scraper.scrape_once()
    for _ in range(19):
        metrics.http.record("GET", TRIP, 200, 0.003)
    metrics.http.record("GET", TRIP, 502, 0.2)
    clock.advance(10)
    await scraper.scrape_once()

    summary = store.service_summaries(60, now=clock.now)["core"]
    assert summary.requests == 20
    assert summary.error_rate == pytest.approx(0.05)
    assert summary.p95_s == pytest.approx(0.005)
    assert store.report(60, now=clock.now, step_s=60)["services"]["core"]["rps"] == 2.0
    assert store.latest_gauges("tracking_open_sockets") == [(target, {}, 12.0)]
    assert targets_by_url(store)[url] == {
        "service": "core",
        "url": url,
        "up": True,
        "last_scrape_at": 1010.0,
        "last_error": None,
    }


async def test_an_unreachable_target_is_recorded_down_with_its_error(
    service: tuple[Service, str], client: httpx.AsyncClient
) -> None:
    _, url = service
    closed_url = f"http://127.0.0.1:{free_port()}"
    store = MetricsStore(900)
    targets = [Target("core", url), Target("upload", closed_url)]

    await Scraper(client, targets, store, timeout_s=scaled(5)).scrape_once()

    state = targets_by_url(store)
    assert state[url]["up"] is True
    assert state[closed_url]["up"] is False
    assert str(state[closed_url]["last_error"]).startswith("ConnectError")
    assert store.latest_gauges("tracking_open_sockets") == [(Target("core", url), {}, 0.0)]


@pytest.mark.parametrize(
    ("path", "error"),
    [("/broken", "HTTP 503 from /metrics"), ("/html", "unreadable metrics: invalid metric name")],
)
async def test_a_page_that_is_not_metrics_is_a_failed_scrape(
    service: tuple[Service, str], client: httpx.AsyncClient, path: str, error: str
) -> None:
    _, url = service
    store = MetricsStore(900)

    await Scraper(client, [Target("core", url + path)], store, timeout_s=scaled(5)).scrape_once()

    state = targets_by_url(store)[url + path]
    assert state["up"] is False
    assert str(state["last_error"]).startswith(error)


async def test_hung_targets_do_not_delay_the_others_beyond_the_timeout(
    service: tuple[Service, str], client: httpx.AsyncClient, unanswered_url: str
) -> None:
    _, url = service
    timeout_s = scaled(1.0)
    healthy = Target("core", url)
    hung = [Target("tracking", unanswered_url), Target("upload", unanswered_url)]
    store = TimedStore()
    scraper = Scraper(client, [*hung, healthy], store, timeout_s=timeout_s)
    loop = asyncio.get_running_loop()

    started = loop.time()
    await scraper.scrape_once()
    elapsed = loop.time() - started

    # Both hung targets waited out one timeout together, not one after the other.
    assert timeout_s - 0.01 <= elapsed < 1.5 * timeout_s
    assert store.recorded_at[healthy] - started < timeout_s / 2
    state = targets_by_url(store)
    assert state[url]["up"] is True
    assert state[unanswered_url]["up"] is False
    assert state[unanswered_url]["last_error"] == f"no answer within {timeout_s:g} s"


async def test_run_scrapes_every_interval_until_cancelled(
    service: tuple[Service, str], client: httpx.AsyncClient
) -> None:
    _, url = service
    store = MetricsStore(900)
    scrapes: list[float] = []
    enough = asyncio.Event()

    def clock() -> float:
        scrapes.append(asyncio.get_running_loop().time())
        if len(scrapes) == 4:
            enough.set()
        return float(len(scrapes))

    scraper = Scraper(client, [Target("core", url)], store, timeout_s=scaled(5), clock=clock)
    task = asyncio.create_task(scraper.run(interval_s=0.1))
    async with asyncio.timeout(scaled(5)):
        await enough.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    # Paced by the interval, not one round straight after another.
    assert min(later - earlier for earlier, later in pairwise(scrapes)) >= 0.05
    assert targets_by_url(store)[url]["up"] is True
