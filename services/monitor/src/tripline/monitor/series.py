"""Request summaries from the services' scraped ``/metrics``: parsing, windowed increases,
quantiles, the admin metrics report. Pure: snapshots come in with their times, questions with
their ``now``. Increases follow Prometheus' ``increase()`` without extrapolation: differences
between snapshots, where a counter that went down had restarted from zero.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from typing import Any, NamedTuple

from prometheus_client.parser import text_string_to_metric_families

from tripline.common.histograms import histogram_quantile
from tripline.monitor.targets import Target, by_service

LATENCY = "http_request_duration_seconds"
# The gauges kept from each scrape, for alerts and the admin view.
GAUGES = frozenset(
    {"mongodb_pool_checked_out", "mongodb_pool_size", "mongodb_pool_max"}
    | {"tripline_dependency_up", "gateway_breaker_state", "core_breaker_state"}
    | {"tracking_open_sockets", "tracking_watched_trips", "gateway_open_sockets"}
)
# A chart needs no more points than a screen has pixels; more is a request to do needless work.
MAX_POINTS = 1000


@dataclass(frozen=True, order=True)
class RouteKey:
    service: str
    method: str
    route: str


@dataclass(frozen=True)
class RouteStats:
    """One route's latency histogram, summed over response statuses."""

    # (upper bound, cumulative count) pairs, ascending, the last bound +Inf.
    buckets: tuple[tuple[float, float], ...]
    count: float
    sum: float
    errors: float
    # When the route's first series was created: a restart moves it, even past a count's dip.
    created: float | None = None


@dataclass(frozen=True)
class GaugeSample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True)
class Scrape:
    """One ``/metrics`` page: request histograms per route and the gauges in GAUGES."""

    routes: Mapping[RouteKey, RouteStats]
    gauges: tuple[GaugeSample, ...] = ()

    @cached_property
    def total(self) -> RouteStats:
        """Every route added together."""
        tally = _Tally()
        for stats in self.routes.values():
            tally.add(stats, elapsed_s=math.inf)  # a sum, not a rate
        buckets = tuple(sorted(tally.buckets.items()))
        return RouteStats(buckets, tally.requests, tally.sum, tally.errors)


class Snapshot(NamedTuple):
    t: float
    scrape: Scrape
    # A counter restarted since the snapshot before: no difference may span the two.
    restarted: bool


# Two snapshots of one replica, older first, the seconds between the window's ends, a restart.
Pair = tuple[Scrape, Scrape, float, bool]


@dataclass(frozen=True)
class ServiceSummary:
    requests: int
    error_rate: float | None
    p95_s: float | None


def parse_scrape(text: str) -> Scrape:
    """Parse a Prometheus text exposition, leaving out the probes' requests (``/health...``,
    ``/metrics``); raises ValueError when ``text`` is not one."""
    buckets = defaultdict[RouteKey, defaultdict[float, float]](lambda: defaultdict(float))
    counts, sums, errors = (defaultdict[RouteKey, float](float) for _ in range(3))
    created: dict[RouteKey, float] = {}
    gauges: list[GaugeSample] = []
    for family in text_string_to_metric_families(text):
        if family.name in GAUGES:
            gauges.extend(
                GaugeSample(family.name, tuple(sorted(sample.labels.items())), sample.value)
                for sample in family.samples
            )
            continue
        # The text format puts ``_created`` in a family of its own, OpenMetrics in the histogram's.
        if family.name not in (LATENCY, f"{LATENCY}_created"):
            continue
        for sample in family.samples:
            labels = sample.labels
            key = RouteKey(*(labels.get(name, "") for name in ("service", "method", "route")))
            if key.route.startswith("/health") or key.route == "/metrics":
                continue
            suffix = sample.name.removeprefix(LATENCY)
            if suffix == "_bucket":
                if "le" not in labels:
                    raise ValueError(f"{sample.name} sample without an le label")
                buckets[key][float(labels["le"])] += sample.value
            elif suffix == "_count":
                counts[key] += sample.value
                status = labels.get("status", "")
                if status.isdigit() and int(status) >= 500:
                    errors[key] += sample.value
            elif suffix == "_sum":
                sums[key] += sample.value
            elif suffix == "_created":
                created[key] = min(created.get(key, math.inf), sample.value)
    routes: dict[RouteKey, RouteStats] = {}
    for key, count in counts.items():
        bounds = buckets[key]
        bounds.setdefault(math.inf, count)
        routes[key] = RouteStats(
            tuple(sorted(bounds.items())), count, sums[key], errors[key], created.get(key)
        )
    return Scrape(routes, tuple(gauges))


def restarted(old: RouteStats, new: RouteStats) -> bool:
    """Whether a route's counters restarted between two snapshots of one replica: a count went
    down, or its series were created anew."""
    old_buckets = dict(old.buckets)
    return (
        (old.created is not None and new.created is not None and new.created != old.created)
        or new.count < old.count
        or new.errors < old.errors
        or any(count < old_buckets.get(bound, 0.0) for bound, count in new.buckets)
    )


def increase(old: RouteStats | None, new: RouteStats) -> RouteStats:
    """What a route counted between two snapshots of one replica (all of ``new`` if restarted)."""
    return new if old is None or restarted(old, new) else _difference(old, new)


def _difference(old: RouteStats, new: RouteStats) -> RouteStats:
    old_buckets = dict(old.buckets)
    buckets = tuple((bound, count - old_buckets.get(bound, 0.0)) for bound, count in new.buckets)
    return RouteStats(
        buckets, new.count - old.count, new.sum - old.sum, new.errors - old.errors, new.created
    )


@dataclass
class _Tally:
    """Increases of several routes and replicas added together."""

    requests: float = 0.0
    errors: float = 0.0
    sum: float = 0.0
    rps: float = 0.0
    buckets: defaultdict[float, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, stats: RouteStats, elapsed_s: float) -> None:
        """Add one replica's increase over ``elapsed_s`` seconds (replicas share bucket bounds)."""
        self.requests += stats.count
        self.errors += stats.errors
        self.sum += stats.sum
        self.rps += stats.count / elapsed_s
        for bound, count in stats.buckets:
            self.buckets[bound] += count

    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None

    def quantile(self, q: float) -> float | None:
        return histogram_quantile(q, list(self.buckets.items())) if self.requests > 0 else None

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": round(self.requests),
            "rps": round(self.rps, 3),
            "error_rate": _rounded(self.error_rate(), 6),
            "p50_ms": _ms(self.quantile(0.5)),
            "p95_ms": _ms(self.quantile(0.95)),
            "p99_ms": _ms(self.quantile(0.99)),
        }


@dataclass
class _TargetState:
    snapshots: deque[Snapshot] = field(default_factory=deque)
    up: bool = False
    last_scrape_at: float | None = None
    last_error: str | None = None


class MetricsStore:
    """Scraped snapshots per target, kept ``history_s`` seconds (plus the one just older, so a
    window as long as the history has a start), and the summaries built from them. ``targets``
    are reported before their first scrape; services and targets in the order they came.
    """

    def __init__(self, history_s: float, targets: Iterable[Target] = ()) -> None:
        if not history_s > 0:
            raise ValueError(f"history_s must be positive, got {history_s!r}")
        self._history_s = history_s
        self._targets: dict[Target, _TargetState] = {target: _TargetState() for target in targets}

    def record(self, target: Target, t: float, scrape: Scrape) -> None:
        """Keep a successful scrape of ``target`` taken at ``t``."""
        state = self._targets.setdefault(target, _TargetState())
        snapshots = state.snapshots
        if snapshots and t < snapshots[-1].t:
            # The wall clock stepped back: differences across the step would be nonsense.
            snapshots.clear()
        before = snapshots[-1].scrape.routes if snapshots else {}
        # A route that vanished went with the process that served it.
        fresh = any(
            key not in scrape.routes or restarted(stats, scrape.routes[key])
            for key, stats in before.items()
        )
        snapshots.append(Snapshot(t, scrape, fresh))
        while len(snapshots) > 1 and snapshots[1].t <= t - self._history_s:
            snapshots.popleft()
        state.up, state.last_scrape_at, state.last_error = True, t, None

    def record_failure(self, target: Target, t: float, error: str) -> None:
        """Mark ``target`` down since its scrape at ``t`` failed with ``error``."""
        state = self._targets.setdefault(target, _TargetState())
        state.up, state.last_scrape_at, state.last_error = False, t, error

    def latest_gauges(self, name: str) -> list[tuple[Target, dict[str, str], float]]:
        """Each sample of gauge ``name`` from the last scrape of every target that is up."""
        return [
            (target, dict(sample.labels), sample.value)
            for target, state in self._targets.items()
            if state.up and state.snapshots
            for sample in state.snapshots[-1].scrape.gauges
            if sample.name == name
        ]

    def service_summaries(self, window_s: float, now: float) -> dict[str, ServiceSummary]:
        """Requests, error rate and p95 latency per service over the ``window_s`` before ``now``
        (rate and latency None without requests)."""
        if not 0 < window_s < math.inf:
            raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
        summaries: dict[str, ServiceSummary] = {}
        for service, targets in by_service(self._targets).items():
            tally, _ = _tally(self._pairs(targets, now - window_s, now), by_route=False)
            summaries[service] = ServiceSummary(
                round(tally.requests), tally.error_rate(), tally.quantile(0.95)
            )
        return summaries

    def report(self, window_s: float, now: float, step_s: float) -> dict[str, Any]:
        """The admin metrics JSON: per service totals, routes (busiest first) and a chart series
        with a point every ``step_s`` up to ``now`` (none for a step without a new scrape), then
        every target's scrape state with the GAUGES of its last good scrape. Raises ValueError
        for a window or step that is not a positive number of seconds, or more than MAX_POINTS
        steps."""
        if not (0 < window_s < math.inf and 0 < step_s < math.inf):
            raise ValueError(f"window_s and step_s must be positive, got {window_s!r}, {step_s!r}")
        points = max(1, round(window_s / step_s))
        if points > MAX_POINTS:
            raise ValueError(f"{points} chart points asked for; at most {MAX_POINTS}")
        services: dict[str, dict[str, Any]] = {}
        for service, targets in by_service(self._targets).items():
            total, routes = _tally(self._pairs(targets, now - window_s, now))
            busiest = sorted(routes.items(), key=lambda item: (-item[1].requests, item[0]))
            services[service] = {
                **total.as_json(),
                "routes": [
                    {"method": method, "route": route, **tally.as_json()}
                    for (method, route), tally in busiest
                    if tally.requests > 0
                ],
                "series": list(self._series(targets, now, step_s, points)),
            }
        return {
            "window_s": window_s,
            "generated_at": round(now, 3),
            "services": services,
            "targets": [
                {
                    "service": target.service,
                    "url": target.url,
                    "up": state.up,
                    "last_scrape_at": _rounded(state.last_scrape_at, 3),
                    "last_error": state.last_error,
                    "gauges": [
                        {"name": sample.name, "labels": dict(sample.labels), "value": sample.value}
                        for sample in (
                            state.snapshots[-1].scrape.gauges
                            if state.up and state.snapshots
                            else ()
                        )
                    ],
                }
                for target, state in self._targets.items()
            ],
        }

    def _series(
        self, targets: Sequence[Target], now: float, step_s: float, points: int
    ) -> Iterator[dict[str, Any]]:
        for i in reversed(range(points)):
            end = now - i * step_s
            if pairs := self._pairs(targets, end - step_s, end):
                tally, _ = _tally(pairs, by_route=False)
                yield {
                    "t": round(end, 3),
                    "rps": round(tally.rps, 3),
                    "error_rate": _rounded(tally.error_rate(), 6),
                    "p95_ms": _ms(tally.quantile(0.95)),
                }

    def _pairs(self, targets: Sequence[Target], start: float, end: float) -> list[Pair]:
        """For each of ``targets``: from its snapshot at or just before ``start`` (else its
        oldest) to its newest at or before ``end``, the differences to add up, split where
        counters restarted."""
        pairs: list[Pair] = []
        for target in targets:
            snapshots = self._targets[target].snapshots
            last = bisect_right(snapshots, end, key=lambda snapshot: snapshot.t) - 1
            first = max(bisect_right(snapshots, start, key=lambda snapshot: snapshot.t) - 1, 0)
            if last <= first:
                continue
            elapsed_s = snapshots[last].t - snapshots[first].t
            bounds = [first]
            for i in range(first + 1, last + 1):
                if snapshots[i].restarted:
                    bounds.extend((i - 1, i))
            bounds.append(last)
            pairs.extend(
                (snapshots[a].scrape, snapshots[b].scrape, elapsed_s, snapshots[b].restarted)
                for a, b in pairwise(bounds)
                if a < b
            )
        return pairs


def _tally(
    pairs: Iterable[Pair], *, by_route: bool = True
) -> tuple[_Tally, dict[tuple[str, str], _Tally]]:
    """The increases in ``pairs`` added up, in all and (``by_route``) per (method, route)."""
    total, routes = _Tally(), defaultdict[tuple[str, str], _Tally](_Tally)
    for old, new, elapsed_s, restart in pairs:
        if not (by_route or restart):
            # No counter went down: the routes' sums subtract as the routes would, 1/N the work.
            total.add(_difference(old.total, new.total), elapsed_s)
            continue
        for key, stats in new.routes.items():
            change = increase(old.routes.get(key), stats)
            total.add(change, elapsed_s)
            routes[key.method, key.route].add(change, elapsed_s)
    return total, routes


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
