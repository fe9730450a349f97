"""The HTML report of one load-test run: the verdict, SLAs, the gate, the figures and charts.

:func:`render_report` turns a run's ``summary.json`` (a mapping) and its ``platform.jsonl``
samples into one self-contained page: inline CSS and SVG, no script, nothing fetched. Any part
of the input may be missing, null or of an unexpected type (a partial or crashed run): what is
there is rendered, what is not says "not measured", and nothing in the data makes it raise.
Every string from the input is escaped. :func:`write_report` is the only function with I/O.

Time series come from the samples: x is seconds since the first sample; rates are differences
of consecutive cumulative counters over the time between the samples, and a counter that went
down was restarted, so its new value is the increase.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from html import escape
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from tripline.loadtest.svg import Bars, Series, bar_chart, line_chart

NOT_MEASURED = "not measured"
PRIORITIES = ("critical", "normal", "low")
CLASS_ORDER = ("critical", "read", "write", "normal", "low")
STATUS_COLORS = {"2xx": "#59a14f", "429": "#f28e2b", "503": "#e15759"}
CHART_WIDTH, CHART_HEIGHT = 560, 240
LATENCY_QUANTILE = 0.95

Point = tuple[float, float | None]
Bucket = tuple[float, float]
K = TypeVar("K", bound=Hashable)

CSS = """
:root { --fg: #1d2330; --muted: #6b7280; --line: #d8dce3; --pass: #1a7f37; --fail: #c62828; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
  max-width: 1180px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 17px; margin: 28px 0 8px; padding-bottom: 3px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 4px; }
.meta { color: var(--muted); margin: 0 0 12px; }
table { border-collapse: collapse; margin: 4px 0 12px; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
th { font-weight: 600; background: #f4f5f7; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.bad td { background: #fdecea; }
.verdict { border-left: 10px solid var(--muted); background: #f4f5f7; padding: 10px 18px; }
.verdict .word { font-size: 44px; font-weight: 800; letter-spacing: .04em; line-height: 1.1; }
.verdict.pass { border-color: var(--pass); background: #eaf6ec; }
.verdict.fail { border-color: var(--fail); background: #fdecea; }
.pass .word, .ok { color: var(--pass); }
.fail .word, .bad-word { color: var(--fail); font-weight: 600; }
.verdict ul { margin: 6px 0 2px; padding-left: 20px; }
.nm { color: var(--muted); font-style: italic; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
  gap: 12px 24px; align-items: start; }
.tables { display: flex; flex-wrap: wrap; gap: 0 32px; align-items: flex-start; }
figure { margin: 0; break-inside: avoid; }
figure svg { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 12px; }
p.text { max-width: 80ch; white-space: pre-wrap; }
@media print {
  body { margin: 0; max-width: none; font-size: 11px; }
  h2 { break-after: avoid; }
  table, figure, .verdict, section.block { break-inside: avoid; }
  .grid { grid-template-columns: 1fr 1fr; }
  a { color: inherit; }
}
"""


# -- reading the input: never raises, None for anything missing or odd ---------------------


def _dig(value: Any, *keys: str) -> Any:
    """``value[k1][k2]...``, or None as soon as a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _num(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (bools, strings, NaN, infinities)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def _records(value: Any) -> list[Mapping[str, Any]]:
    """The mappings in ``value`` if it is a list, else none."""
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _ordered(names: Iterable[str], first: Sequence[str] = ()) -> list[str]:
    """``names`` without repeats: those in ``first`` in that order, then the rest sorted."""
    unique = set(names)
    return [n for n in first if n in unique] + sorted(unique - set(first), key=str)


# -- time series from the platform samples --------------------------------------------------


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
    """The ``q`` quantile (0..1) of a histogram, estimated like Prometheus' histogram_quantile.

    ``buckets`` are (upper bound ``le``, observations <= le), cumulative in ``le``; a missing
    +Inf bucket is taken to hold the largest count. The estimate interpolates linearly inside
    the bucket the rank falls in (the first bucket starts at 0); a rank in the +Inf bucket
    gives the largest finite bound. None when there is no observation or no finite bound.
    """
    ordered = sorted((le, count) for le, count in buckets if not math.isnan(le))
    running, monotonic = 0.0, []
    for le, count in ordered:
        running = max(running, count)
        monotonic.append((le, running))
    finite = [(le, count) for le, count in monotonic if math.isfinite(le)]
    if not finite or running <= 0:
        return None
    rank = min(max(q, 0.0), 1.0) * running
    lower, below = 0.0, 0.0
    for index, (le, count) in enumerate(finite):
        if count >= rank:
            if index == 0 and le <= 0:
                return le
            if count <= below:
                return lower
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return finite[-1][0]


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
            le, count = _bound(pair[0]), _num(pair[1])
            if le is not None and count is not None:
                buckets.append((le, count))
    return buckets or None


def _timeline(samples: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[float]]:
    """The samples that carry a time ``t``, in time order, and their x (s since the first)."""
    timed = sorted(
        ((t, s) for s in samples if isinstance(s, Mapping) and (t := _num(s.get("t"))) is not None),
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
        key: [None if t is None else (_num(t[key]) if key in t else absent) for t in tables]
        for key in keys
    }


def _table_at(*path: str) -> Callable[[Mapping[str, Any]], Mapping[str, Any] | None]:
    """A reader of the mapping at ``path`` in a sample (None when it is not a mapping)."""

    def read(sample: Mapping[str, Any]) -> Mapping[str, Any] | None:
        value = _dig(sample, *path)
        return value if isinstance(value, Mapping) else None

    return read


def _field_table(
    path: Sequence[str], field: str
) -> Callable[[Mapping[str, Any]], Mapping[str, Any] | None]:
    """A reader of ``{name: entry[field]}`` for the entries of the mapping at ``path``."""

    def read(sample: Mapping[str, Any]) -> Mapping[str, Any] | None:
        value = _dig(sample, *path)
        if not isinstance(value, Mapping):
            return None
        return {name: entry[field] for name, entry in value.items() if field in _mapping(entry)}

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
    return [(x, None if v is None else v * factor) for x, v in points]


def _histograms(sample: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return _table_at("gateway", "latency")(sample)


def latency_series(
    samples: Sequence[Mapping[str, Any]], q: float = LATENCY_QUANTILE
) -> list[Series]:
    """Per route class, the ``q`` latency (ms) of the requests in each interval between samples.

    From the differences of the cumulative histograms; None when the interval had no request
    or a sample lacks the histogram.
    """
    ordered, xs = _timeline(samples)
    tables = [_histograms(s) for s in ordered]
    classes = _ordered((c for t in tables if t for c in t), CLASS_ORDER)
    result = []
    for name in classes:
        hists = [parse_buckets(_dig(t, name, "buckets")) if t else None for t in tables]
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
    count = _dig(entry, "count")
    if count is None and (buckets := parse_buckets(_dig(entry, "buckets"))):
        count = max(c for _, c in buckets)
    return count


def throughput_series(samples: Sequence[Mapping[str, Any]]) -> list[Series]:
    """Requests per second per route class, from the histograms' observation counts."""
    ordered, xs = _timeline(samples)

    def counts(sample: Mapping[str, Any]) -> Mapping[str, Any] | None:
        table = _histograms(sample)
        return None if table is None else {c: _histogram_count(e) for c, e in table.items()}

    values = _keyed(ordered, counts, 0.0)
    return [
        Series(name, counter_rates(_at(xs, values[name]))) for name in _ordered(values, CLASS_ORDER)
    ]


def _status_group(status: str) -> str:
    return "2xx" if status.startswith("2") else status


def status_series(samples: Sequence[Mapping[str, Any]]) -> list[Series]:
    """Responses per second by status across route classes: 2xx together, others one by one."""
    ordered, xs = _timeline(samples)

    def flat(sample: Mapping[str, Any]) -> Mapping[tuple[str, str], Any] | None:
        table = _table_at("gateway", "responses")(sample)
        if table is None:
            return None
        return {(c, s): n for c, row in table.items() for s, n in _mapping(row).items()}

    groups: dict[str, list[list[Point]]] = {}
    for (_, status), values in _keyed(ordered, flat, 0.0).items():
        rates = counter_rates(_at(xs, values))
        groups.setdefault(_status_group(str(status)), []).append(rates)
    names = _ordered(groups, ("2xx",))
    return [Series(n, _sum_points(groups[n]), STATUS_COLORS.get(n)) for n in names]


def shedding_series(samples: Sequence[Mapping[str, Any]]) -> tuple[Series, list[Series]]:
    """The gateway's shedding level at each sample, and shed requests per second per priority."""
    ordered, xs = _timeline(samples)
    level = Series(
        "shedding level",
        [(x, _num(_dig(s, "gateway", "shedding_level"))) for x, s in zip(xs, ordered, strict=True)],
    )
    admission = _keyed(ordered, _table_at("gateway", "admission"), 0.0)
    shed = {str(k).rpartition("/")[0]: v for k, v in admission.items() if str(k).endswith("/shed")}
    rates = [Series(p, counter_rates(_at(xs, shed[p]))) for p in _ordered(shed, PRIORITIES)]
    return level, rates


def queue_series(samples: Sequence[Mapping[str, Any]]) -> tuple[list[Series], Series]:
    """Each queue's depth at each sample, and the documents processed per second."""
    ordered, xs = _timeline(samples)
    depths = _keyed(ordered, _field_table(("queues",), "depth"), None)
    queues = [Series(q, _at(xs, depths[q])) for q in _ordered(depths)]
    documents = Series(
        "documents/s",
        [(x, _num(s.get("documents_per_s"))) for x, s in zip(xs, ordered, strict=True)],
    )
    return queues, documents


def process_series(samples: Sequence[Mapping[str, Any]]) -> tuple[list[Series], list[Series]]:
    """Per process its CPU use (percent of one core) and its resident memory (MB)."""
    ordered, xs = _timeline(samples)
    cpu = _keyed(ordered, _field_table(("processes",), "cpu_s"), None)
    rss = _keyed(ordered, _field_table(("processes",), "rss_bytes"), None)
    cpu_series = [Series(p, _scaled(counter_rates(_at(xs, cpu[p])), 100.0)) for p in _ordered(cpu)]
    rss_series = [Series(p, _scaled(_at(xs, rss[p]), 1e-6)) for p in _ordered(rss)]
    return cpu_series, rss_series


# -- HTML pieces: every one returns escaped markup ----------------------------------------


def _nm() -> str:
    return f'<span class="nm">{NOT_MEASURED}</span>'


def _text(value: Any) -> str:
    """``value`` as escaped text; "not measured" for None or an empty string."""
    return _nm() if value is None or value == "" else escape(str(value))


def _number(value: Any, unit: str = "") -> str:
    """A number for a table: thousands separated, a few significant digits, with ``unit``."""
    number = _num(value)
    if number is None:
        return _nm() if value is None else escape(str(value))
    if number.is_integer() and abs(number) < 1e15:
        text = f"{int(number):,}"
    elif abs(number) >= 1000:
        text = f"{number:,.0f}"
    elif abs(number) >= 10:
        text = f"{number:.1f}"
    else:
        text = f"{number:.3g}"
    return f"{text} {escape(unit)}" if unit else text


def _percent(part: Any, whole: Any = 1.0) -> str:
    """``part`` as a percentage of ``whole``; "n/a" when ``whole`` is 0."""
    numerator, denominator = _num(part), _num(whole)
    if numerator is None or denominator is None:
        return _nm()
    if denominator == 0:
        return "n/a"
    share = numerator / denominator * 100
    return f"{share:.2f} %" if share < 10 else f"{share:.1f} %"


def _ok(value: Any) -> str:
    if value is True:
        return '<span class="ok">pass</span>'
    if value is False:
        return '<span class="bad-word">FAIL</span>'
    return _nm()


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    numeric: Collection[int] = (),
    bad: Sequence[bool] = (),
) -> str:
    """A table of already escaped cells; the ``numeric`` columns right aligned, ``bad`` rows red."""

    def cell(tag: str, column: int, content: str) -> str:
        return (
            f'<{tag} class="n">{content}</{tag}>'
            if column in numeric
            else f"<{tag}>{content}</{tag}>"
        )

    head = "".join(cell("th", i, escape(h)) for i, h in enumerate(headers))
    lines = [f"<table><thead><tr>{head}</tr></thead><tbody>"]
    for index, row in enumerate(rows):
        marked = ' class="bad"' if index < len(bad) and bad[index] else ""
        lines.append(f"<tr{marked}>{''.join(cell('td', i, c) for i, c in enumerate(row))}</tr>")
    return "".join([*lines, "</tbody></table>"])


def _pairs(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column table of labels (escaped here) and already escaped values."""
    body = "".join(f"<tr><th>{escape(label)}</th><td>{value}</td></tr>" for label, value in rows)
    return f"<table><tbody>{body}</tbody></table>"


def _section(title: str, *parts: str) -> str:
    return f'<section class="block"><h2>{escape(title)}</h2>{"".join(parts)}</section>'


def _missing(what: str) -> str:
    return f'<p class="nm">{escape(what)}: {NOT_MEASURED}.</p>'


def _figure(svg: str, caption: str = "") -> str:
    note = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{svg}{note}</figure>"


# -- the report's sections ------------------------------------------------------------------


def failures(summary: Mapping[str, Any]) -> list[str]:
    """One line per failed SLA and per failed gate check, naming it."""
    lines = []
    for sla in _records(summary.get("slas")):
        if sla.get("ok") is False:
            detail = sla.get("message") or f"value {sla.get('value')}, limit {sla.get('limit')}"
            lines.append(f"SLA {sla.get('name') or '(unnamed)'}: {detail}")
    gate = _mapping(summary.get("gate"))
    raw = gate.get("failures")
    listed: list[Any] = raw if isinstance(raw, list) else []
    gate_lines = [f"Gate: {failure}" for failure in listed if failure]
    if gate.get("ok") is False and not gate_lines:
        gate_lines = [
            f"Gate {r.get('name')}: {r.get('value')}, limit {r.get('limit')}"
            for r in _records(gate.get("ratios"))
            if r.get("ok") is False
        ] or ["Gate: failed"]
    return lines + gate_lines


def _verdict(summary: Mapping[str, Any]) -> str:
    ok = summary.get("ok")
    word, css = ("PASS", "pass") if ok is True else ("FAIL", "fail") if ok is False else ("", "")
    items = "".join(f"<li>{escape(line)}</li>" for line in failures(summary))
    detail = f"<ul>{items}</ul>" if items else ""
    if not word:
        word, detail = "NO VERDICT", f'<p class="nm">The verdict: {NOT_MEASURED}.</p>{detail}'
    return f'<div class="verdict {css}"><div class="word">{word}</div>{detail}</div>'


def _header(summary: Mapping[str, Any]) -> str:
    profile = summary.get("profile")
    flag = summary.get("local")
    local = (
        ("yes (private stack)" if flag else "no (deployment)") if isinstance(flag, bool) else None
    )
    duration = _num(summary.get("duration_s"))
    rows = [
        ("Profile", _text(profile)),
        ("Target", _text(summary.get("target"))),
        ("Local", _text(local)),
        ("Started", _text(summary.get("started_at"))),
        ("Duration", _nm() if duration is None else f"{duration:.1f} s"),
        ("Commit", _text(summary.get("commit"))),
    ]
    title = f"Load test report: {profile}" if profile else "Load test report"
    return f"<h1>{escape(str(title))}</h1>{_verdict(summary)}{_pairs(rows)}"


def _scenarios(summary: Mapping[str, Any]) -> str:
    scenarios = _mapping(summary.get("scenarios"))
    concurrency = summary.get("concurrency")
    text = f'<p class="text">{_text(concurrency)}</p>' if concurrency else _missing("Concurrency")
    if not scenarios:
        return _section("Scenarios", _missing("Scenarios"), text)
    rows = [
        [escape(str(name)), _text(_dig(s, "description")), _number(_dig(s, "peak_concurrent"))]
        for name, s in scenarios.items()
    ]
    return _section(
        "Scenarios", _table(["Scenario", "Description", "Peak concurrent"], rows, numeric={2}), text
    )


def _slas(summary: Mapping[str, Any]) -> str:
    slas = _records(summary.get("slas"))
    if not slas:
        return _section("SLAs", _missing("SLAs"))
    rows = []
    for sla in slas:
        unit = str(sla.get("unit") or "")
        rows.append(
            [
                _text(sla.get("name")),
                _text(sla.get("requirement")),
                _number(sla.get("limit"), unit),
                _number(sla.get("value"), unit),
                _ok(sla.get("ok")),
                _text(sla.get("message")),
            ]
        )
    bad = [sla.get("ok") is False for sla in slas]
    headers = ["SLA", "Requirement", "Limit", "Value", "OK", "Detail"]
    return _section("SLAs", _table(headers, rows, numeric={2, 3}, bad=bad))


def _gate(summary: Mapping[str, Any]) -> str:
    gate = summary.get("gate")
    if not isinstance(gate, Mapping):
        return _section("Release gate", _missing("Release gate"))
    reference = _mapping(gate.get("reference"))
    ref = _pairs(
        [
            ("Gate", _ok(gate.get("ok"))),
            ("Reference", _text(reference.get("name"))),
            ("Reference rps", _number(reference.get("rps"))),
            ("Reference CPU per request", _number(reference.get("cpu_us_per_request"), "µs")),
            ("Reference p50", _number(reference.get("p50_ms"), "ms")),
        ]
    )
    ratios = _records(gate.get("ratios"))
    rows = [
        [
            _text(r.get("name")),
            _number(r.get("value")),
            _number(r.get("baseline")),
            _number(r.get("tolerance")),
            _number(r.get("limit")),
            _ok(r.get("ok")),
        ]
        for r in ratios
    ]
    headers = ["Ratio", "Value", "Baseline", "Tolerance", "Limit", "OK"]
    table = (
        _table(headers, rows, numeric=range(1, 5), bad=[r.get("ok") is False for r in ratios])
        if ratios
        else ""
    )
    return _section("Release gate", ref, table or _missing("Gate ratios"))


def _latency_figures(figures: Mapping[str, Any]) -> str:
    latency = _mapping(figures.get("latency_ms"))
    if not latency:
        return "<h3>Latency per class</h3>" + _missing("Latency")
    names = _ordered(latency, CLASS_ORDER)
    keys = ("p50", "p95", "p99", "max")
    rows = [
        [escape(n), _number(_dig(latency, n, "count"))]
        + [_number(_dig(latency, n, k)) for k in keys]
        for n in names
    ]
    bars = [Bars(k, [_num(_dig(latency, n, k)) for n in names]) for k in ("p50", "p95", "p99")]
    chart = bar_chart(
        "Latency percentiles per class",
        names,
        bars,
        y_unit="ms",
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
    )
    table = _table(
        ["Class", "Requests", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows, numeric=range(1, 6)
    )
    return f'<h3>Latency per class</h3><div class="grid"><div>{table}</div>{_figure(chart)}</div>'


def _status_figures(figures: Mapping[str, Any]) -> str:
    counts = _mapping(figures.get("status_counts"))
    total = sum(n for n in (_num(v) for v in counts.values()) if n is not None)
    rows = [
        [escape(str(s)), _number(counts[s]), _percent(counts[s], total)] for s in _ordered(counts)
    ]
    table = (
        _table(["Status", "Responses", "Share"], rows, numeric={1, 2})
        if rows
        else _missing("Status counts")
    )
    return f"<div><h3>Responses by status</h3>{table}</div>"


def _priority_figures(figures: Mapping[str, Any]) -> str:
    by_priority = _mapping(figures.get("by_priority"))
    if not by_priority:
        return "<h3>Responses by priority</h3>" + _missing("Per-priority responses")
    names = _ordered(by_priority, PRIORITIES)
    rows, other, limited, unavailable = [], [], [], []
    for name in names:
        entry = _mapping(by_priority[name])
        requests, r429, r503 = (entry.get(k) for k in ("requests", "429", "503"))
        rows.append(
            [
                escape(name),
                _number(requests),
                _number(r429),
                _percent(r429, requests),
                _number(r503),
                _percent(r503, requests),
            ]
        )
        total, n429, n503 = _num(requests), _num(r429) or 0.0, _num(r503) or 0.0
        other.append(None if total is None else max(total - n429 - n503, 0.0))
        limited.append(_num(r429))
        unavailable.append(_num(r503))
    headers = ["Priority", "Requests", "429", "429 share", "503", "503 share"]
    series = [
        Bars("other", other, STATUS_COLORS["2xx"]),
        Bars("429", limited, STATUS_COLORS["429"]),
        Bars("503", unavailable, STATUS_COLORS["503"]),
    ]
    chart = bar_chart(
        "Responses by priority",
        names,
        series,
        y_unit="requests",
        stacked=True,
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
    )
    table = _table(headers, rows, numeric=range(1, 6))
    return (
        f'<h3>Responses by priority</h3><div class="grid"><div>{table}</div>{_figure(chart)}</div>'
    )


def _percentiles(value: Any) -> str:
    latency = _mapping(value)
    if not latency:
        return _nm()
    return ", ".join(f"{k} {_number(latency.get(k), 'ms')}" for k in ("p50", "p95", "p99", "max"))


def _block(title: str, source: Mapping[str, Any], rows: Sequence[tuple[str, str]]) -> str:
    """A small titled table, or "not measured" when ``source`` has nothing."""
    return f"<div><h3>{escape(title)}</h3>{_pairs(rows) if source else _missing(title)}</div>"


def _features(figures: Mapping[str, Any]) -> str:
    sos, tracking, uploads = (_mapping(figures.get(k)) for k in ("sos", "tracking", "uploads"))
    sos_rows = [
        ("Sent", _number(sos.get("sent"))),
        ("Accepted", _number(sos.get("accepted"))),
        ("Accepted share", _percent(sos.get("accepted"), sos.get("sent"))),
    ]
    tracking_keys = ("subscribers", "published", "delivered", "lost", "reconnects")
    tracking_rows = [(k.capitalize(), _number(tracking.get(k))) for k in tracking_keys]
    tracking_rows.append(("Delivery latency", _percentiles(tracking.get("latency_ms"))))
    upload_keys = ("started", "verdicts", "verified", "rejected")
    upload_rows = [(k.capitalize(), _number(uploads.get(k))) for k in upload_keys]
    upload_rows.append(("Time to verdict", _percentiles(uploads.get("time_to_verdict_ms"))))
    blocks = [
        _block("SOS", sos, sos_rows),
        _block("Tracking", tracking, tracking_rows),
        _block("Uploads", uploads, upload_rows),
    ]
    return f'<div class="tables">{"".join(blocks)}</div>'


def _processes(figures: Mapping[str, Any]) -> str:
    processes = _mapping(figures.get("processes"))
    rows = []
    for name in _ordered(processes):
        entry = _mapping(processes[name])
        rss = _num(entry.get("rss_max_bytes"))
        rows.append(
            [
                escape(str(name)),
                _number(entry.get("cpu_s"), "s"),
                _percent(entry.get("cpu_share")),
                _nm() if rss is None else _number(round(rss / 1e6, 1), "MB"),
            ]
        )
    table = (
        _table(["Process", "CPU time", "CPU share", "Max RSS"], rows, numeric={1, 2, 3})
        if rows
        else _missing("Processes")
    )
    capacity = _mapping(figures.get("capacity"))
    text = _pairs(
        [
            ("Capacity", f'<span class="text">{_text(capacity.get("text"))}</span>'),
            ("Saturated first", _text(capacity.get("saturated_first"))),
        ]
    )
    return f"<h3>Processes</h3>{table}<h3>Capacity</h3>{text}"


def _figures(summary: Mapping[str, Any]) -> str:
    figures = summary.get("figures")
    if not isinstance(figures, Mapping):
        return _section("Figures", _missing("Figures"))
    totals = _pairs(
        [
            ("Requests", _number(figures.get("requests"))),
            ("Requests per second", _number(figures.get("rps"))),
            ("Errors", _number(figures.get("errors"))),
            ("Error rate", _percent(figures.get("error_rate"))),
        ]
    )
    return _section(
        "Figures",
        f'<div class="tables"><div><h3>Totals</h3>{totals}</div>{_status_figures(figures)}</div>',
        _latency_figures(figures),
        _priority_figures(figures),
        _features(figures),
        _processes(figures),
    )


def _charts(samples: Sequence[Mapping[str, Any]]) -> str:
    ordered, xs = _timeline(samples)
    if not ordered:
        return _section("Over time", _missing("Platform samples (platform.jsonl)"))
    x_range = (0.0, max(xs[-1], 1.0))

    def chart(title: str, series: Sequence[Series], unit: str, **options: Any) -> str:
        return line_chart(
            title,
            series,
            y_unit=unit,
            width=CHART_WIDTH,
            height=CHART_HEIGHT,
            x_range=x_range,
            **options,
        )

    level, shed = shedding_series(ordered)
    queues, documents = queue_series(ordered)
    cpu, rss = process_series(ordered)
    figures = [
        _figure(
            chart(f"Latency p{LATENCY_QUANTILE * 100:g} per class", latency_series(ordered), "ms"),
            "Per interval between samples, from the gateway's histograms (bucket interpolation).",
        ),
        _figure(chart("Throughput per class", throughput_series(ordered), "req/s")),
        _figure(chart("Responses by status", status_series(ordered), "resp/s")),
        _figure(
            chart("Shedding level", [level], "level", step=True, y_max=2.0, integer=True),
            "0 admits all, 1 sheds low, 2 sheds low and normal.",
        ),
        _figure(chart("Shed requests per priority", shed, "req/s")),
        _figure(chart("Queue depth", queues, "items")),
        _figure(chart("Documents processed", [documents], "docs/s")),
        _figure(chart("CPU per process", cpu, "% core"), "100 % is one core."),
        _figure(chart("Memory (RSS) per process", rss, "MB")),
    ]
    note = f'<p class="meta">{len(ordered)} samples over {xs[-1]:.0f} s.</p>'
    return _section("Over time", note, f'<div class="grid">{"".join(figures)}</div>')


def _link(label: str, target: Any) -> str:
    """A relative link to one of the run's files; anything not a plain relative path as text."""
    if not isinstance(target, str) or not target:
        return f"<li>{escape(label)}: {_nm()}</li>"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or target.startswith(("/", "\\")):
        return f"<li>{escape(label)}: {escape(target)}</li>"
    return f'<li>{escape(label)}: <a href="{escape(target)}">{escape(target)}</a></li>'


def _files(summary: Mapping[str, Any]) -> str:
    files = _mapping(summary.get("files"))
    if not files:
        return _section("Files", _missing("Files"))
    return _section("Files", "<ul>" + "".join(_link(str(k), v) for k, v in files.items()) + "</ul>")


def render_report(summary: Mapping[str, Any], samples: Sequence[Mapping[str, Any]]) -> str:
    """The HTML page of one run: the verdict first, then the SLAs, the gate, the figures, the
    charts over time, the scenarios and links to the run's files.

    Whatever is missing, null or odd in ``summary`` or ``samples`` shows as "not measured" (a
    chart without data as "no data"); it never raises on the data. Every string from the input
    is escaped; the page has no script and loads nothing.
    """
    summary = _mapping(summary)
    samples = (
        [s for s in samples if isinstance(s, Mapping)] if isinstance(samples, Sequence) else []
    )
    title = " · ".join(
        escape(str(v))
        for v in ("Load test", summary.get("profile"), summary.get("started_at"))
        if v
    )
    body = "".join(
        [
            _header(summary),
            _slas(summary),
            _gate(summary),
            _figures(summary),
            _charts(samples),
            _scenarios(summary),
            _files(summary),
        ]
    )
    policy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{CSS}</style></head>\n<body>{body}</body></html>\n"
    )


# -- the only I/O -----------------------------------------------------------------------------


def _read_summary(path: Path) -> Mapping[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return _mapping(value)


def _read_samples(path: Path) -> list[Mapping[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError):
        return []
    samples = []
    for line in lines:
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, Mapping):
            samples.append(value)
    return samples


def write_report(run_dir: Path) -> Path:
    """Write ``report.html`` into ``run_dir`` from its ``summary.json`` and ``platform.jsonl``.

    A missing or unreadable file, or a bad line in ``platform.jsonl``, counts as no data; the
    report is written anyway. Returns the report's path.
    """
    summary = _read_summary(run_dir / "summary.json")
    samples = _read_samples(run_dir / "platform.jsonl")
    path = run_dir / "report.html"
    path.write_text(render_report(summary, samples), encoding="utf-8")
    return path
