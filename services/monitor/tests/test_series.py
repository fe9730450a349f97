from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import generate_latest

from tripline.common.metrics import HttpMetrics
from tripline.monitor.series import (
    GaugeSample,
    MetricsStore,
    RouteKey,
    RouteStats,
    Scrape,
    ServiceSummary,
    increase,
    parse_scrape,
)
from tripline.monitor.targets import Target

INF = math.inf
CORE_1 = Target("core", "http://core-1:8081")
CORE_2 = Target("core", "http://core-2:8081")
GATEWAY = Target("gateway", "http://gateway:8080")
TRIP = RouteKey("core", "GET", "/api/trips/{trip_id}")
USERS = RouteKey("core", "POST", "/api/users")


def stats(
    fast: float = 0, slow: float = 0, *, errors: float = 0, created: float | None = 1.0
) -> RouteStats:
    """A route's counters: ``fast`` requests took up to 10 ms, ``slow`` ones 10 to 500 ms."""
    total = fast + slow
    return RouteStats(((0.01, fast), (0.5, total), (INF, total)), total, 0.0, errors, created)


def scrape(*routes: tuple[RouteKey, RouteStats], gauges: tuple[GaugeSample, ...] = ()) -> Scrape:
    return Scrape(dict(routes), gauges)


def steady(store: MetricsStore, target: Target, *, until: int, rps: float, every: int = 10) -> None:
    """Record a replica serving ``rps`` fast requests to TRIP from t=0 to ``until``."""
    for t in range(0, until + 1, every):
        store.record(target, t, scrape((TRIP, stats(fast=rps * t))))


# Parsing


def services_page() -> str:
    registry = CollectorRegistry()
    http = HttpMetrics(registry, "core")
    for status, elapsed_s in ((200, 0.002), (200, 0.02), (404, 0.003), (503, 0.3)):
        http.record("GET", "/api/trips/{trip_id}", status, elapsed_s)
    http.record("GET", "/health/ready", 200, 0.001)
    http.record("GET", "/health/live", 200, 0.001)
    http.record("GET", "/metrics", 200, 0.001)
    pool = Gauge("mongodb_pool_checked_out", "", ["service"], registry=registry)
    pool.labels("core").set(7)
    Gauge("core_breaker_state", "", ["breaker"], registry=registry).labels("payments").set(2)
    Gauge("unwatched_gauge", "", registry=registry).set(1)
    return generate_latest(registry).decode()


def test_parse_sums_a_routes_statuses_and_counts_its_5xx() -> None:
    parsed = parse_scrape(services_page())

    assert list(parsed.routes) == [TRIP]
    route = parsed.routes[TRIP]
    assert route.count == 4
    assert route.errors == 1
    assert route.sum == pytest.approx(0.325)
    assert dict(route.buckets)[0.005] == 2
    assert dict(route.buckets)[0.025] == 3
    assert route.buckets[-1] == (INF, 4)
    assert [bound for bound, _ in route.buckets] == sorted(bound for bound, _ in route.buckets)
    assert route.created is not None


def test_parse_keeps_the_watched_gauges_with_their_labels() -> None:
    parsed = parse_scrape(services_page())

    assert set(parsed.gauges) == {
        GaugeSample("mongodb_pool_checked_out", (("service", "core"),), 7.0),
        GaugeSample("core_breaker_state", (("breaker", "payments"),), 2.0),
    }


def test_parse_completes_a_histogram_without_an_inf_bucket() -> None:
    text = (
        "# TYPE http_request_duration_seconds histogram\n"
        'http_request_duration_seconds_bucket{method="GET",route="/a",status="200",le="0.1"} 2\n'
        'http_request_duration_seconds_count{method="GET",route="/a",status="200"} 3\n'
        'http_request_duration_seconds_sum{method="GET",route="/a",status="200"} 0.4\n'
    )

    route = parse_scrape(text).routes[RouteKey("", "GET", "/a")]

    assert route.buckets == ((0.1, 2.0), (INF, 3.0))
    assert route.created is None


def test_a_pages_total_adds_its_routes_up() -> None:
    page = scrape(
        (TRIP, RouteStats(((0.1, 1.0), (INF, 3.0)), 3, 0.5, 1)),
        (USERS, RouteStats(((0.1, 2.0), (INF, 2.0)), 2, 0.1, 0)),
    )

    total = page.total
    assert (total.buckets, total.count, total.errors) == (((0.1, 3.0), (INF, 5.0)), 5, 1)
    assert total.sum == pytest.approx(0.6)


@pytest.mark.parametrize("text", ["<html>Bad gateway</html>\n", "up{service=core} 1\n"])
def test_parse_refuses_what_is_not_the_text_format(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the parser's own message
        parse_scrape(text)


# Increases


def test_increase_is_the_difference_of_each_counter() -> None:
    change = increase(stats(fast=10, slow=2, errors=1), stats(fast=15, slow=5, errors=2))

    assert change == RouteStats(((0.01, 5), (0.5, 8), (INF, 8)), 8, 0.0, 1, 1.0)


def test_a_counter_that_went_down_restarted_so_its_new_value_is_the_increase() -> None:
    after = stats(fast=3, created=None)

    assert increase(stats(fast=10, created=None), after) == after


def test_series_created_anew_restarted_even_when_the_count_grew() -> None:
    after = stats(fast=50, created=2.0)

    assert increase(stats(fast=10, created=1.0), after) == after


def test_a_new_route_counts_from_zero() -> None:
    assert increase(None, stats(fast=4)) == stats(fast=4)


# Windows


def test_a_window_starts_at_the_snapshot_at_or_just_before_its_start() -> None:
    store = MetricsStore(900)
    steady(store, CORE_1, until=100, rps=1)

    assert store.service_summaries(30, now=100)["core"].requests == 30
    assert store.service_summaries(35, now=100)["core"].requests == 40
    assert store.service_summaries(30, now=105)["core"].requests == 30
    assert store.report(35, now=100, step_s=35)["services"]["core"]["rps"] == 1.0


def test_a_window_longer_than_the_data_starts_at_the_oldest_snapshot() -> None:
    store = MetricsStore(900)
    steady(store, CORE_1, until=50, rps=2)

    report = store.report(300, now=50, step_s=300)["services"]["core"]

    assert report["requests"] == 100
    assert report["rps"] == 2.0


def test_history_keeps_one_snapshot_older_than_its_length() -> None:
    store = MetricsStore(30)
    steady(store, CORE_1, until=100, rps=1)

    assert store.service_summaries(1000, now=100)["core"].requests == 30


def test_one_snapshot_has_no_increase() -> None:
    store = MetricsStore(900)
    store.record(CORE_1, 0, scrape((TRIP, stats(fast=100))))

    assert store.service_summaries(300, now=10)["core"] == ServiceSummary(0, None, None)


def test_a_replica_gone_before_the_window_adds_nothing() -> None:
    store = MetricsStore(900)
    steady(store, CORE_1, until=50, rps=1)
    store.record_failure(CORE_1, 60, "ConnectError: refused")

    assert store.service_summaries(30, now=200)["core"] == ServiceSummary(0, None, None)


def test_requests_before_a_restart_in_the_window_still_count() -> None:
    store = MetricsStore(900)
    store.record(CORE_1, 0, scrape((TRIP, stats(fast=100, created=1.0))))
    store.record(CORE_1, 10, scrape((TRIP, stats(fast=110, errors=5, created=1.0))))
    # Restarted: its counters begin again, and even exceed the old ones.
    store.record(CORE_1, 20, scrape((TRIP, stats(fast=200, created=15.0))))
    store.record(CORE_1, 30, scrape((TRIP, stats(fast=230, created=15.0))))

    summary = store.service_summaries(100, now=30)["core"]

    assert summary.requests == 10 + 200 + 30
    assert summary.error_rate == pytest.approx(5 / 240)


def test_a_route_gone_from_a_scrape_means_the_replica_restarted() -> None:
    store = MetricsStore(900)
    store.record(CORE_1, 0, scrape((TRIP, stats(fast=100, created=None))))
    store.record(CORE_1, 10, scrape((USERS, stats(fast=4, created=None))))
    store.record(CORE_1, 20, scrape((TRIP, stats(fast=150, created=None))))

    assert store.service_summaries(100, now=20)["core"].requests == 4 + 150


@given(
    st.lists(
        st.tuples(st.integers(0, 100), st.integers(0, 20), st.booleans()), min_size=1, max_size=30
    )
)
def test_resets_lose_nothing_scraped(intervals: list[tuple[int, int, bool]]) -> None:
    """A replica serving (fast, slow) requests per interval, restarting at some intervals' start
    (right after a scrape): a window over it all counts every request."""
    store = MetricsStore(10_000)
    fast = slow = 0
    created = 1.0
    store.record(CORE_1, 0, scrape((TRIP, stats(fast, slow, created=created))))
    for t, (more_fast, more_slow, restart) in enumerate(intervals, start=1):
        if restart:
            fast = slow = 0
            created = float(t)
        fast, slow = fast + more_fast, slow + more_slow
        store.record(CORE_1, t, scrape((TRIP, stats(fast, slow, created=created))))

    summary = store.service_summaries(len(intervals), now=len(intervals))["core"]

    assert summary.requests == sum(f + s for f, s, _ in intervals)


@given(
    st.lists(
        st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 5), st.booleans()),
        min_size=1,
        max_size=20,
    ),
    st.integers(1, 25),
)
def test_service_totals_agree_with_the_sum_of_their_routes(
    intervals: list[tuple[int, int, int, bool]], window: int
) -> None:
    """Summaries subtract whole pages where nothing restarted; the report goes route by route."""
    store = MetricsStore(10_000)
    trips, users, errors, created = 0, 0, 0, 1.0
    for t, (more_trips, more_users, more_errors, restart) in enumerate(intervals):
        if restart:
            trips, users, errors, created = 0, 0, 0, float(t)
        trips, users, errors = trips + more_trips, users + more_users, errors + more_errors
        routes = [(TRIP, stats(fast=trips, slow=errors, errors=errors, created=created))]
        if users:
            routes.append((USERS, stats(slow=users, created=created)))
        store.record(CORE_1, t, scrape(*routes))
    now = len(intervals) - 1

    summary = store.service_summaries(window, now)["core"]
    report = store.report(window, now, step_s=window)["services"]["core"]

    assert summary.requests == report["requests"]
    assert summary.requests == sum(route["requests"] for route in report["routes"])
    assert rounded(summary.error_rate, 6) == report["error_rate"]
    assert rounded(summary.p95_s and summary.p95_s * 1000, 3) == report["p95_ms"]


def rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def test_replicas_of_a_service_add_up() -> None:
    store = MetricsStore(900)
    for t in (0, 10):
        store.record(CORE_1, t, scrape((TRIP, stats(fast=9 * t, errors=0))))
        store.record(CORE_2, t + 1, scrape((TRIP, stats(slow=t, errors=t / 10))))

    summary = store.service_summaries(60, now=20)["core"]
    report = store.report(60, now=20, step_s=60)["services"]["core"]

    assert summary.requests == 100
    assert summary.error_rate == pytest.approx(0.01)
    # 90 fast and 10 slow: the 95th falls halfway through the slow bucket.
    assert summary.p95_s == pytest.approx(0.01 + (0.5 - 0.01) * 0.5)
    assert report["rps"] == 10.0
    assert [(route["route"], route["requests"]) for route in report["routes"]] == [
        ("/api/trips/{trip_id}", 100)
    ]


# Report


def test_report_has_the_admin_shape() -> None:
    idle = Target("upload", "http://upload:8082")
    store = MetricsStore(900, targets=[idle, CORE_1])
    for t in range(0, 61, 5):
        store.record(
            CORE_1,
            1000 + t,
            scrape((TRIP, stats(fast=2 * t, errors=t / 10)), (USERS, stats(slow=t))),
        )
    store.record(GATEWAY, 1000, scrape())
    store.record_failure(GATEWAY, 1005, "no answer within 2 s")

    report = store.report(60, now=1060, step_s=15)

    json.dumps(report, allow_nan=False)
    assert report["window_s"] == 60
    assert report["generated_at"] == 1060
    assert list(report["services"]) == ["upload", "core", "gateway"]
    core = report["services"]["core"]
    assert core["requests"] == 180
    assert core["rps"] == 3.0
    assert core["error_rate"] == pytest.approx(6 / 180, abs=1e-6)
    assert set(core) == {
        "requests",
        "rps",
        "error_rate",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "routes",
        "series",
    }
    assert core["routes"][0] == {
        "method": "GET",
        "route": "/api/trips/{trip_id}",
        "requests": 120,
        "rps": 2.0,
        "error_rate": 0.05,
        "p50_ms": 5.0,
        "p95_ms": 9.5,
        "p99_ms": 9.9,
    }
    assert core["routes"][1]["route"] == "/api/users"
    assert [point["t"] for point in core["series"]] == [1015, 1030, 1045, 1060]
    assert core["series"][-1] == {"t": 1060, "rps": 3.0, "error_rate": 0.033333, "p95_ms": 426.5}
    assert report["services"]["upload"] == {
        "requests": 0,
        "rps": 0.0,
        "error_rate": None,
        "p50_ms": None,
        "p95_ms": None,
        "p99_ms": None,
        "routes": [],
        "series": [],
    }
    assert report["services"]["gateway"]["series"] == []
    assert report["targets"] == [
        {
            "service": "upload",
            "url": idle.url,
            "up": False,
            "last_scrape_at": None,
            "last_error": None,
            "gauges": [],
        },
        {
            "service": "core",
            "url": CORE_1.url,
            "up": True,
            "last_scrape_at": 1060,
            "last_error": None,
            "gauges": [],
        },
        {
            "service": "gateway",
            "url": GATEWAY.url,
            "up": False,
            "last_scrape_at": 1005,
            "last_error": "no answer within 2 s",
            "gauges": [],
        },
    ]


def test_series_leaves_out_steps_without_a_new_scrape() -> None:
    store = MetricsStore(900)
    for t in (0, 10, 40):
        store.record(CORE_1, t, scrape((TRIP, stats(fast=t))))

    series = store.report(40, now=40, step_s=10)["services"]["core"]["series"]

    assert [(point["t"], point["rps"]) for point in series] == [(10, 1.0), (40, 1.0)]


def test_series_points_without_requests_have_no_rate_or_latency() -> None:
    store = MetricsStore(900)
    for t in (0, 10):
        store.record(CORE_1, t, scrape((TRIP, stats(fast=5))))

    series = store.report(10, now=10, step_s=10)["services"]["core"]["series"]

    assert series == [{"t": 10, "rps": 0.0, "error_rate": None, "p95_ms": None}]


@pytest.mark.parametrize(
    ("window_s", "step_s"), [(0, 5), (-1, 5), (300, 0), (math.inf, 5), (300, math.nan), (1e6, 1)]
)
def test_report_refuses_a_bad_window_or_step(window_s: float, step_s: float) -> None:
    with pytest.raises(ValueError, match=r"window_s|points"):
        MetricsStore(900).report(window_s, now=0, step_s=step_s)


def test_a_clock_stepping_back_starts_the_history_again() -> None:
    store = MetricsStore(900)
    steady(store, CORE_1, until=100, rps=1)
    store.record(CORE_1, 50, scrape((TRIP, stats(fast=105))))
    store.record(CORE_1, 60, scrape((TRIP, stats(fast=115))))

    assert store.service_summaries(300, now=60)["core"].requests == 10


# Gauges


def test_latest_gauges_come_from_the_last_scrape_of_targets_that_are_up() -> None:
    store = MetricsStore(900)

    def pool(value: float) -> Scrape:
        return scrape(
            gauges=(
                GaugeSample("mongodb_pool_checked_out", (("service", "core"),), value),
                GaugeSample("mongodb_pool_max", (("service", "core"),), 100),
            )
        )

    store.record(CORE_1, 0, pool(10))
    store.record(CORE_1, 5, pool(80))
    store.record(CORE_2, 0, pool(99))
    store.record_failure(CORE_2, 5, "HTTP 503 from /metrics")

    assert store.latest_gauges("mongodb_pool_checked_out") == [(CORE_1, {"service": "core"}, 80)]
    assert store.latest_gauges("tracking_open_sockets") == []


def test_report_lists_each_target_s_gauges_from_its_last_good_scrape() -> None:
    store = MetricsStore(900)
    page = """# TYPE tracking_open_sockets gauge
tracking_open_sockets 12.0
# TYPE mongodb_pool_checked_out gauge
mongodb_pool_checked_out{service="core"} 3.0
"""
    store.record(CORE_1, 10, parse_scrape(page))
    (target,) = store.report(60, now=10, step_s=10)["targets"]
    assert sorted(target["gauges"], key=lambda gauge: gauge["name"]) == [
        {"name": "mongodb_pool_checked_out", "labels": {"service": "core"}, "value": 3.0},
        {"name": "tracking_open_sockets", "labels": {}, "value": 12.0},
    ]
    store.record_failure(CORE_1, 20, "refused")
    assert store.report(60, now=20, step_s=10)["targets"][0]["gauges"] == []
