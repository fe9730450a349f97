from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tripline.loadtest.report_series import (
    OTHER_COLORS,
    STATUS_COLORS,
    counter_increase,
    counter_rates,
    histogram_increase,
    histogram_quantile,
    latency_series,
    parse_buckets,
    process_series,
    queue_series,
    shedding_series,
    status_series,
    throughput_series,
    timeline,
)

INF = math.inf


def test_quantile_interpolates_inside_the_bucket() -> None:
    buckets = [(0.1, 10.0), (0.2, 30.0), (0.5, 90.0), (INF, 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.3)
    assert histogram_quantile(0.05, buckets) == pytest.approx(0.05)  # first bucket starts at 0
    assert histogram_quantile(0.2, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.9, buckets) == pytest.approx(0.5)


def test_quantile_known_prometheus_values() -> None:
    buckets = [(0.005, 0.0), (0.01, 0.0), (0.025, 10.0), (0.05, 20.0), (0.1, 40.0), (INF, 40.0)]
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.095)
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.05)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.025)


def test_quantile_in_the_inf_bucket_is_the_largest_finite_bound() -> None:
    assert histogram_quantile(0.99, [(0.1, 50.0), (1.0, 90.0), (INF, 100.0)]) == 1.0


def test_quantile_of_an_empty_histogram_is_none() -> None:
    assert histogram_quantile(0.95, []) is None
    assert histogram_quantile(0.95, [(0.1, 0.0), (INF, 0.0)]) is None
    assert histogram_quantile(0.95, [(INF, 10.0)]) is None


def test_quantile_tolerates_unsorted_non_monotonic_buckets() -> None:
    buckets = [(INF, 100.0), (0.5, 90.0), (0.1, 10.0), (0.2, 5.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.2 + 0.3 * 40 / 80)


def test_buckets_accept_inf_as_a_string_or_a_number() -> None:
    parsed = parse_buckets([[0.1, 1], ["+Inf", 2]])
    assert parsed == [(0.1, 1.0), (INF, 2.0)]
    assert parse_buckets([[0.1, 1], [INF, 2]]) == parsed
    assert parse_buckets(json.loads("[[0.1, 1], [Infinity, 2]]")) == parsed
    assert parse_buckets({"0.1": 1, "+Inf": 2}) == parsed
    assert parse_buckets([["x", 1], [0.1], None, [0.1, "y"]]) is None
    assert parse_buckets(None) is None


def test_histogram_increase_and_reset() -> None:
    before = [(0.1, 10.0), (INF, 20.0)]
    assert histogram_increase(before, [(0.1, 15.0), (INF, 30.0)]) == [(0.1, 5.0), (INF, 10.0)]
    assert histogram_increase(before, [(0.1, 2.0), (INF, 3.0)]) == [(0.1, 2.0), (INF, 3.0)]


def test_counter_rates_with_a_reset_and_gaps() -> None:
    points: list[tuple[float, float | None]] = [
        (0, 100),
        (2, 120),
        (4, 10),  # restarted: 10 new
        (6, None),
        (8, 30),
        (8, 40),  # no time passed
        (10, 50),
    ]
    assert counter_rates(points) == [(2, 10), (4, 5), (6, None), (8, None), (8, None), (10, 5)]
    assert counter_rates([]) == []
    assert counter_rates([(0, 1)]) == []
    assert counter_increase(5, 3) == 3


def test_latency_series_p95_per_interval() -> None:
    hist = {"buckets": [[0.1, 0], [0.2, 0], ["+Inf", 0]], "count": 0}
    busy = {"buckets": [[0.1, 10], [0.2, 30], ["+Inf", 30]], "count": 30}
    samples: list[dict[str, Any]] = [
        {"t": 100.0, "gateway": {"latency": {"read": hist}}},
        {"t": 102.0, "gateway": {"latency": {"read": busy}}},
        {"t": 104.0, "gateway": {"latency": {"read": busy}}},  # no request in this interval
        {"t": 106.0},  # no gateway section: unknown
    ]
    (read,) = latency_series(samples)
    assert read.name == "read"
    x, p95 = read.points[0]
    assert x == 2.0
    assert p95 == pytest.approx((0.1 + 0.1 * (28.5 - 10) / 20) * 1000)
    assert read.points[1:] == [(4.0, None), (6.0, None)]


def test_throughput_from_histogram_counts_with_a_restart() -> None:
    def sample(t: float, count: int) -> dict[str, Any]:
        return {"t": t, "gateway": {"latency": {"read": {"buckets": [], "count": count}}}}

    (read,) = throughput_series([sample(0, 0), sample(2, 100), sample(4, 20), sample(6, 60)])
    assert read.points == [(2, 50), (4, 10), (6, 20)]


def test_status_series_groups_2xx_and_splits_the_rest() -> None:
    samples = [
        {"t": 0, "gateway": {"responses": {"read": {"200": 10, "201": 5}, "critical": {"202": 1}}}},
        {
            "t": 2,
            "gateway": {
                "responses": {
                    "read": {"200": 20, "201": 5, "429": 4},
                    "critical": {"202": 3, "503": 2},
                }
            },
        },
    ]
    series = status_series(samples)
    assert [s.name for s in series] == ["2xx", "429", "503"]
    assert [s.points for s in series] == [[(2, 6)], [(2, 2)], [(2, 1)]]


def test_shedding_series_level_and_shed_rates() -> None:
    samples = [
        {"t": 10, "gateway": {"shedding_level": 0, "admission": {"low/admitted": 5}}},
        {"t": 12, "gateway": {"shedding_level": 1, "admission": {"low/shed": 8}}},
        {
            "t": 14,
            "gateway": {"shedding_level": 2, "admission": {"low/shed": 10, "normal/shed": 4}},
        },
    ]
    level, shed = shedding_series(samples)
    assert level.points == [(0, 0), (2, 1), (4, 2)]
    assert [(s.name, s.points) for s in shed] == [
        ("normal", [(2, 0), (4, 2)]),
        ("low", [(2, 4), (4, 1)]),
    ]


def test_queue_and_process_series() -> None:
    samples = [
        {
            "t": 0,
            "queues": {"documents": {"depth": 3}},
            "documents_per_s": 2.5,
            "processes": {"core": {"cpu_s": 10.0, "rss_bytes": 50_000_000}},
        },
        {
            "t": 2,
            "queues": {"documents": {"depth": 5}, "mail": {"depth": 1}},
            "processes": {"core": {"cpu_s": 11.0, "rss_bytes": 52_000_000}},
        },
        {"t": 4, "processes": {"core": {"cpu_s": 0.5}}},  # core restarted
    ]
    queues, documents = queue_series(samples)
    assert [(q.name, q.points) for q in queues] == [
        ("documents", [(0, 3), (2, 5), (4, None)]),
        ("mail", [(0, None), (2, 1), (4, None)]),
    ]
    assert documents.points == [(0, 2.5), (2, None), (4, None)]
    (cpu,), (rss,) = process_series(samples)
    assert [x for x, _ in cpu.points] == [2, 4]
    assert [v for _, v in cpu.points] == pytest.approx([50.0, 25.0])
    assert [x for x, _ in rss.points] == [0, 2, 4]
    assert [v for _, v in rss.points][:2] == pytest.approx([50.0, 52.0])
    assert rss.points[2] == (4, None)


def test_status_colours_are_fixed_and_other_statuses_never_take_them() -> None:
    statuses = ["200", "404", "409", "429", "500", "503"]
    samples = [
        {"t": t, "gateway": {"responses": {"read": {s: n * t for s in statuses}}}}
        for t, n in ((0, 1), (2, 1))
    ]
    colors = {s.name: s.color for s in status_series(samples)}
    assert colors["2xx"] == STATUS_COLORS["2xx"]
    assert colors["409"] == STATUS_COLORS["409"]
    assert colors["429"] == STATUS_COLORS["429"]
    assert colors["503"] == STATUS_COLORS["503"]
    assert [colors["404"], colors["500"]] == list(OTHER_COLORS[:2])
    assert not set(OTHER_COLORS) & set(STATUS_COLORS.values())


def test_timeline_orders_by_time_and_drops_samples_without_one() -> None:
    samples: list[Any] = [{"t": 12.5}, {"t": None}, {"t": 10.5}, "x", {"t": float("nan")}, {}]
    by_time, xs = timeline(samples)
    assert by_time == [{"t": 10.5}, {"t": 12.5}]
    assert xs == [0.0, 2.0]
    assert timeline([]) == ([], [])
