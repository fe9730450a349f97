"""Time series for the report's charts, from the platform samples (``platform.jsonl``). Pure.

x is seconds since the first sample that has a time ``t``. Rates are differences of
consecutive cumulative counters over the time between the samples; a counter that went down
was restarted, so its new value is the increase. Latency quantiles come from the differences
of the gateway's cumulative histograms, estimated like Prometheus' ``histogram_quantile``.
A value a sample lacks is None (a gap in the chart), never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from itertools import cycle, pairwise
from typing import Any, TypeVar

from tripline.common.histograms import histogram_quantile as estimate
from tripline.loadtest.report_values import (
    CLASS_ORDER,
    PRIORITY_ORDER,
    dig,
    finite,
    mapping,
    ordered,
)
from tripline.loadtest.svg import Series

# The colours of answers (and of k6's failed requests, "errors"), the same in every chart of
# the report; other statuses take the next of OTHER_COLORS, which none of these use.
STATUS_COLORS = {
    "2xx": "#59a14f",
    "429": "#f28e2b",
    "503": "#e15759",
    "409": "#b07aa1",
    "errors": "#9c755f",
}
OTHER_COLORS = ("#4e79a7", "#76b7b2", "#edc948", "#ff9da7", "#bab0ac")
LATENCY_QUANTILE = 0.95

Point = tuple[float, float | None]
Bucket = tuple[float, float]
K = TypeVar("K", bound=Hashable)


def counter_increase(before: float, after: float) -> float:
    """How much a cumulative counter grew; one that went down was restarted: all of ``after``."""
    return after - before if after >= before else after


def counter_rates(points: Sequence[Point]) -> list[Point]:
    """Per-second rates of a cumulative counter sampled at ``points`` (x in s, value or None).

    One point per pair of consecutive samples, at the later one's x: the increase (see
    :func:`counter_increase`) over the time between them; None when either value is missing or
    the time did not advance.
    """
    rates: list[Point] = []
    for (x0, v0), (x1, v1) in pairwise(points):
        dt = x1 - x0
        rate = None if v0 is None or v1 is None or dt <= 0 else counter_increase(v0, v1) / dt
        rates.append((x1, rate))
    return rates


def histogram_quantile(q: float, buckets: Sequence[Bucket]) -> float | None:
    """The ``q`` quantile (clamped to 0..1) of a histogram read from a run's samples, by the
    platform's one estimator (:func:`tripline.common.histograms.histogram_quantile`).

    Samples are not trusted: NaN bounds are dropped and a missing +Inf bucket is taken to hold
    the largest count. None when there is no observation or no finite bound.
    """
    by_bound = sorted((le, count) for le, count in buckets if not math.isnan(le))
    if not by_bound or math.isnan(q):
        return None
    if by_bound[-1][0] != math.inf:
        by_bound.append((math.inf, max(count for _, count in by_bound)))
    return estimate(min(max(q, 0.0), 1.0), by_bound)


def histogram_increase(before: Sequence[Bucket], after: Sequence[Bucket]) -> list[Bucket]:
    """The observations ``after`` holds that ``before`` did not, bucket by bucket.

    When any bucket went down the histogram was reset, and all of ``after`` is new.
    """
    previous = dict(before)
    if any(count < previous.get(le, 0.0) for le, count in after):
        return list(after)
    return [(le, count - previous.get(le, 0.0)) for le, count in after]


def _bound(value: Any) -> float | None:
    """A bucket's upper bound: a number, or a string such as "0.5" or "+Inf"; None otherwise."""
    if isinstance(value, str):
        try:
            bound = float(value.strip())
        except ValueError:
            return None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        bound = float(value)
    else:
        return None
    return None if math.isnan(bound) else bound


def parse_buckets(value: Any) -> list[Bucket] | None:
    """Histogram buckets from ``[[le, count], ...]`` or ``{le: count}``; None if there are none."""
    pairs = (
        value.items() if isinstance(value, Mapping) else value if isinstance(value, list) else []
    )
    buckets: list[Bucket] = []
    for pair in pairs:
        if isinstance(pair, list | tuple) and len(pair) == 2:
            le, count = _bound(pair[0]), finite(pair[1])
            if le is not None and count is not None:
                buckets.append((le, count))
    return buckets or None


def timeline(samples: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[float]]:
    """The samples that carry a time ``t``, in time order, and their x (s since the first)."""
    timed = sorted(
        (
            (t, s)
            for s in samples
            if isinstance(s, Mapping) and (t := finite(s.get("t"))) is not None
        ),
        key=lambda pair: pair[0],
    )
    return [s for _, s in timed], [t - timed[0][0] for t, _ in timed]


def _keyed(
    samples: Sequence[Mapping[str, Any]],
    table: Callable[[Mapping[str, Any]], Mapping[K, Any] | None],
    absent: float | None,
) -> dict[K, list[float | None]]:
    """Per key found in any sample's ``table``, its value in every sample.

    A sample without the table gives None; a table without the key gives ``absent`` (0 for
    counters that are created on first use, None for gauges).
    """
    tables = [table(sample) for sample in samples]
    keys = {key for t in tables if t is not None for key in t}
    return {
        key: [None if t is None else (finite(t[key]) if key in t else absent) for t in tables]
        for key in keys
    }


def _table_at(*path: str) -> Callable[[Mapping[str, Any]], Mapping[str, Any] | None]:
    """A reader of the mapping at ``path`` in a sample (None when it is not a mapping)."""

    def read(sample: Mapping[str, Any]) -> Mapping[str, Any] | None:
        value = dig(sample, *path)
        return value if isinstance(value, Mapping) else None

    return read


def _field_table(
    path: Sequence[str], field: str
) -> Callable[[Mapping[str, Any]], Mapping[str, Any] | None]:
    """A reader of ``{name: entry[field]}`` for the entries of the mapping at ``path``."""

    def read(sample: Mapping[str, Any]) -> Mapping[str, Any] | None:
        value = dig(sample, *path)
        if not isinstance(value, Mapping):
            return None
        return {name: entry[field] for name, entry in value.items() if field in mapping(entry)}

    return read


def _sum_points(series: Sequence[Sequence[Point]]) -> list[Point]:
    """Point by point sums of series sampled at the same x; None where every one is None."""
    sums: list[Point] = []
    for points in zip(*series, strict=True):
        values = [v for _, v in points if v is not None]
        sums.append((points[0][0], sum(values) if values else None))
    return sums


def _at(xs: Sequence[float], values: Sequence[float | None]) -> list[Point]:
    """``values`` paired with the samples' x."""
    return list(zip(xs, values, strict=True))


def _scaled(points: Sequence[Point], factor: float) -> list[Point]:
    """``points`` with every value multiplied by ``factor``."""
    return [(x, None if v is None else v * factor) for x, v in points]


_histograms = _table_at("gateway", "latency")


def latency_series(
    samples: Sequence[Mapping[str, Any]], q: float = LATENCY_QUANTILE
) -> list[Series]:
    """Per route class, the ``q`` latency (ms) of the requests in each interval between samples.

    From the differences of the cumulative histograms; None when the interval had no request
    or a sample lacks the histogram.
    """
    by_time, xs = timeline(samples)
    tables = [_histograms(s) for s in by_time]
    classes = ordered((c for t in tables if t for c in t), CLASS_ORDER)
    result = []
    for name in classes:
        hists = [parse_buckets(dig(t, name, "buckets")) if t else None for t in tables]
        points: list[Point] = []
        for x, (before, after) in zip(xs[1:], pairwise(hists), strict=True):
            quantile = None
            if before is not None and after is not None:
                quantile = histogram_quantile(q, histogram_increase(before, after))
            points.append((x, None if quantile is None else quantile * 1000))
        result.append(Series(name, points))
    return result


def _histogram_count(entry: Any) -> Any:
    """A class histogram's observation count: ``count``, else its largest bucket count."""
    count = dig(entry, "count")
    if count is None and (buckets := parse_buckets(dig(entry, "buckets"))):
        count = max(c for _, c in buckets)
    return count


def throughput_series(samples: Sequence[Mapping[str, Any]]) -> list[Series]:
    """Requests per second per route class, from the histograms' observation counts."""
    by_time, xs = timeline(samples)

    def counts(sample: Mapping[str, Any]) -> Mapping[str, Any] | None:
        table = _histograms(sample)
        return None if table is None else {c: _histogram_count(e) for c, e in table.items()}

    values = _keyed(by_time, counts, 0.0)
    return [
        Series(name, counter_rates(_at(xs, values[name]))) for name in ordered(values, CLASS_ORDER)
    ]


def status_series(samples: Sequence[Mapping[str, Any]]) -> list[Series]:
    """Responses per second by status across route classes: 2xx together, others one by one,
    each in its colour (:data:`STATUS_COLORS`, else the next of :data:`OTHER_COLORS`)."""
    by_time, xs = timeline(samples)

    def flat(sample: Mapping[str, Any]) -> Mapping[tuple[str, str], Any] | None:
        table = _table_at("gateway", "responses")(sample)
        if table is None:
            return None
        return {(c, s): n for c, row in table.items() for s, n in mapping(row).items()}

    groups: dict[str, list[list[Point]]] = {}
    for (_, status), values in _keyed(by_time, flat, 0.0).items():
        group = "2xx" if str(status).startswith("2") else str(status)
        groups.setdefault(group, []).append(counter_rates(_at(xs, values)))
    names = ordered(groups, ("2xx",))
    others = cycle(OTHER_COLORS)
    return [Series(n, _sum_points(groups[n]), STATUS_COLORS.get(n) or next(others)) for n in names]


def shedding_series(samples: Sequence[Mapping[str, Any]]) -> tuple[Series, list[Series]]:
    """The gateway's shedding level at each sample, and shed requests per second per priority."""
    by_time, xs = timeline(samples)
    level = Series(
        "shedding level",
        [
            (x, finite(dig(s, "gateway", "shedding_level")))
            for x, s in zip(xs, by_time, strict=True)
        ],
    )
    admission = _keyed(by_time, _table_at("gateway", "admission"), 0.0)
    shed = {str(k).rpartition("/")[0]: v for k, v in admission.items() if str(k).endswith("/shed")}
    rates = [Series(p, counter_rates(_at(xs, shed[p]))) for p in ordered(shed, PRIORITY_ORDER)]
    return level, rates


def queue_series(samples: Sequence[Mapping[str, Any]]) -> tuple[list[Series], Series]:
    """Each queue's depth at each sample, and the documents processed per second."""
    by_time, xs = timeline(samples)
    depths = _keyed(by_time, _field_table(("queues",), "depth"), None)
    queues = [Series(q, _at(xs, depths[q])) for q in ordered(depths)]
    documents = Series(
        "documents/s",
        [(x, finite(s.get("documents_per_s"))) for x, s in zip(xs, by_time, strict=True)],
    )
    return queues, documents


def process_series(samples: Sequence[Mapping[str, Any]]) -> tuple[list[Series], list[Series]]:
    """Per process its CPU use (percent of one core) and its resident memory (MB)."""
    by_time, xs = timeline(samples)
    cpu = _keyed(by_time, _field_table(("processes",), "cpu_s"), None)
    rss = _keyed(by_time, _field_table(("processes",), "rss_bytes"), None)
    cpu_series = [Series(p, _scaled(counter_rates(_at(xs, cpu[p])), 100.0)) for p in ordered(cpu)]
    rss_series = [Series(p, _scaled(_at(xs, rss[p]), 1e-6)) for p in ordered(rss)]
    return cpu_series, rss_series
