"""The report's "Figures" section: what the run measured, from ``summary["figures"]``.

Totals and responses by status, latency per route class, answers per priority, what the
scenarios achieved (SOS, trips, tracking, uploads), each service as the monitor saw it, and
the processes' CPU and memory (see :func:`tripline.loadtest.figures.compute` for the data).
Pure; every function returns escaped markup and never raises on odd data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from tripline.loadtest.report_html import (
    block,
    figure,
    missing,
    muted,
    number,
    pairs,
    percent,
    plain,
    section,
    table,
)
from tripline.loadtest.report_series import STATUS_COLORS
from tripline.loadtest.report_values import (
    CLASS_ORDER,
    PRIORITY_ORDER,
    dig,
    finite,
    mapping,
    ordered,
)
from tripline.loadtest.svg import Bars, bar_chart

CHART_SIZE = (560, 240)
QUANTILES = ("p50", "p95", "p99", "max")
# Per priority, the answers that were not OK (keys of ``by_priority`` and STATUS_COLORS).
NOT_OK = ("429", "503", "409", "errors")
TRIP_STEPS = ("requested", "accepted", "completed", "paid")
TRACKING_COUNTS = ("subscribers", "published", "delivered", "lost", "reconnects", "unrecovered")
UPLOAD_COUNTS = (
    ("started", "Started"),
    ("completed", "Completed"),
    ("verdicts", "Verdicts"),
    ("verified", "Verified"),
    ("rejected", "Rejected"),
    ("failed", "Failed"),
    ("timed_out", "Timed out"),
)


def _grid(table_html: str, chart: str) -> str:
    """A table and its chart side by side (stacked on a narrow page)."""
    return f'<div class="grid"><div>{table_html}</div>{figure(chart)}</div>'


def _count_share(part: Any, whole: Any) -> str:
    """A count and, when it is not 0, its share of ``whole``: "285 (3.17 %)"."""
    count = finite(part)
    if not count or finite(whole) is None:
        return number(part)
    return f"{number(part)} ({percent(part, whole)})"


def _totals(figures: Mapping[str, Any]) -> str:
    rows = [
        ("Requests", number(figures.get("requests"))),
        ("Requests per second", number(figures.get("rps"))),
        ("Errors", number(figures.get("errors"))),
        ("Error rate", percent(figures.get("error_rate"))),
    ]
    return block("Totals", pairs(rows))


def _statuses(figures: Mapping[str, Any]) -> str:
    counts = mapping(figures.get("status_counts"))
    total = sum(n for n in (finite(v) for v in counts.values()) if n is not None)
    rows = [
        [
            escape(f"{status} (no response)" if status == "0" else str(status)),
            number(counts[status]),
            percent(counts[status], total),
        ]
        for status in ordered(counts)
    ]
    if not rows:
        return block("Responses by status", missing("Status counts"))
    return block(
        "Responses by status", table(["Status", "Responses", "Share"], rows, numeric={1, 2})
    )


def _latency(figures: Mapping[str, Any]) -> str:
    latency = mapping(figures.get("latency_ms"))
    if not latency:
        return block("Latency per class (k6)", missing("Latency"))
    names = ordered(latency, CLASS_ORDER)
    rows = [
        [escape(n), number(dig(latency, n, "count"))]
        + [number(dig(latency, n, k)) for k in QUANTILES]
        for n in names
    ]
    headers = ["Class", "Requests", "p50 ms", "p95 ms", "p99 ms", "max ms"]
    bars = [Bars(k, [finite(dig(latency, n, k)) for n in names]) for k in QUANTILES[:3]]
    width, height = CHART_SIZE
    chart = bar_chart(
        "Latency percentiles per class", names, bars, y_unit="ms", width=width, height=height
    )
    return block("Latency per class (k6)", _grid(table(headers, rows, numeric=range(1, 6)), chart))


def _priorities(figures: Mapping[str, Any]) -> str:
    by_priority = mapping(figures.get("by_priority"))
    if not by_priority:
        return block("Answers by priority (k6)", missing("Per-priority answers"))
    names = ordered(by_priority, PRIORITY_ORDER)
    rows, ok_counts = [], []
    not_ok: dict[str, list[float | None]] = {key: [] for key in NOT_OK}
    for name in names:
        entry = mapping(by_priority[name])
        requests = entry.get("requests")
        rows.append(
            [escape(name), number(requests)]
            + [_count_share(entry.get(key), requests) for key in NOT_OK]
        )
        total = finite(requests)
        failed = 0.0
        for key in NOT_OK:
            count = finite(entry.get(key))
            not_ok[key].append(count)
            failed += count or 0.0
        ok_counts.append(None if total is None else max(total - failed, 0.0))
    headers = ["Priority", "Requests", *NOT_OK]
    series = [Bars("ok", ok_counts, STATUS_COLORS["2xx"])]
    series += [Bars(key, not_ok[key], STATUS_COLORS[key]) for key in NOT_OK]
    width, height = CHART_SIZE
    chart = bar_chart(
        "Answers by priority",
        names,
        series,
        y_unit="requests",
        stacked=True,
        width=width,
        height=height,
    )
    return block(
        "Answers by priority (k6)", _grid(table(headers, rows, numeric=range(1, 6)), chart)
    )


def _percentiles(value: Any) -> str:
    """A latency summary on one line: "p50 3 ms, p95 6 ms, p99 11 ms, max 19 ms"."""
    latency = mapping(value)
    if not latency:
        return muted()
    return ", ".join(f"{k} {number(latency.get(k), 'ms')}" for k in QUANTILES)


def _counts(title: str, source: Mapping[str, Any], rows: Sequence[tuple[str, str]]) -> str:
    """A small titled table, or "not measured" when ``source`` has nothing."""
    return block(title, pairs(rows) if source else missing(title))


def _sos(figures: Mapping[str, Any]) -> str:
    sos = mapping(figures.get("sos"))
    rows = [
        ("Sent", number(sos.get("sent"))),
        ("Accepted", number(sos.get("accepted"))),
        ("Accepted share", percent(sos.get("accepted"), sos.get("sent"))),
    ]
    return _counts("SOS", sos, rows)


def _trips(figures: Mapping[str, Any]) -> str:
    trips = mapping(figures.get("trips"))
    title = "Trips (users scenario)"
    if not trips:
        return block(title, missing("Trips"))
    requested = trips.get("requested")
    rows = [
        [escape(step), number(trips.get(step)), percent(trips.get(step), requested)]
        for step in TRIP_STEPS
    ]
    return block(title, table(["Step", "Trips", "Of requested"], rows, numeric={1, 2}))


def _tracking(figures: Mapping[str, Any]) -> str:
    tracking = mapping(figures.get("tracking"))
    rows = [(k.capitalize(), number(tracking.get(k))) for k in TRACKING_COUNTS]
    rows.append(("Delivery latency", _percentiles(tracking.get("latency_ms"))))
    return _counts("Tracking", tracking, rows)


def _uploads(figures: Mapping[str, Any]) -> str:
    uploads = mapping(figures.get("uploads"))
    rows = [(label, number(uploads.get(key))) for key, label in UPLOAD_COUNTS]
    rows.append(("Time to verdict", _percentiles(uploads.get("time_to_verdict_ms"))))
    return _counts("Uploads", uploads, rows)


def _monitor(figures: Mapping[str, Any]) -> str:
    title = "Per service, as the monitor saw it"
    services = mapping(figures.get("monitor"))
    if not services:
        return block(title, missing("The monitor's figures"))
    rows = []
    for name in ordered(services):
        entry = mapping(services[name])
        rows.append(
            [
                escape(name),
                number(entry.get("requests")),
                number(entry.get("rps")),
                percent(entry.get("error_rate")),
                number(entry.get("p95_ms")),
                number(entry.get("p99_ms")),
            ]
        )
    headers = ["Service", "Requests", "Requests/s", "Error rate", "p95 ms", "p99 ms"]
    return block(title, table(headers, rows, numeric=range(1, 6)))


def _processes(figures: Mapping[str, Any]) -> str:
    """Each process's CPU and memory, busiest first, and which one saturated first."""
    processes = mapping(figures.get("processes"))
    if not processes:
        return block("Processes", missing("Processes"))
    busiest_first = sorted(
        ordered(processes), key=lambda name: -(finite(dig(processes, name, "cpu_s")) or 0.0)
    )
    rows = []
    for name in busiest_first:
        entry = mapping(processes[name])
        rss = finite(entry.get("rss_max_bytes"))
        rows.append(
            [
                escape(name),
                number(entry.get("cpu_s"), "s"),
                percent(entry.get("cpu_share")),
                muted() if rss is None else number(round(rss / 1e6, 1), "MB"),
            ]
        )
    capacity = mapping(figures.get("capacity"))
    notes = [
        ("Saturated first (most CPU)", plain(capacity.get("saturated_first"))),
        ("Platform CPU (without k6)", number(figures.get("platform_cpu_s"), "s")),
    ]
    if capacity.get("text"):
        notes.append(("Capacity", plain(capacity.get("text"))))
    headers = ["Process", "CPU time", "CPU of one core", "Max RSS"]
    return block(
        "Processes", table(headers, rows, numeric={1, 2, 3}), "<h3>Capacity</h3>", pairs(notes)
    )


def figures_section(summary: Mapping[str, Any]) -> str:
    """The "Figures" section of the page; "not measured" when the summary has no figures."""
    figures = summary.get("figures")
    if not isinstance(figures, Mapping):
        return section("Figures", missing("Figures"))
    outcomes = [_sos(figures), _trips(figures), _tracking(figures), _uploads(figures)]
    return section(
        "Figures",
        f'<div class="tables">{_totals(figures)}{_statuses(figures)}</div>',
        _latency(figures),
        _priorities(figures),
        f'<div class="tables">{"".join(outcomes)}</div>',
        f'<div class="tables">{_monitor(figures)}{_processes(figures)}</div>',
    )
