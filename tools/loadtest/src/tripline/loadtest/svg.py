"""Small SVG charts for the load-test report: lines over time and bars per category.

Every function is pure and returns SVG markup as text, to be inlined in an HTML page: no
scripts, no external resources, no element ids (several charts share one page), and every
string taken from the caller is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#59a14f",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#9c755f",
    "#ff9da7",
    "#bab0ac",
)
DASH = "5 3"  # lines of the palette's second round, so that no two lines look the same
_LEFT, _RIGHT, _TOP, _BOTTOM, _LEGEND_ROW = 52, 14, 38, 26, 16
Box = tuple[float, float, float, float]  # left, top, right, bottom of the plot area
Size = tuple[int, int]
Entry = tuple[str, str, str]  # a legend entry: name, colour, dash pattern ("" for solid)
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800)


@dataclass(frozen=True)
class Series:
    """One line: ``points`` are (x = seconds since the start, y) in x order; y None is a gap."""

    name: str
    points: Sequence[tuple[float, float | None]]
    color: str | None = None


@dataclass(frozen=True)
class Bars:
    """One set of bars: ``values[i]`` belongs to the chart's ``categories[i]``; None draws none."""

    name: str
    values: Sequence[float | None]
    color: str | None = None


def format_number(value: float) -> str:
    """``value`` in a few characters: 0.25, 12.5, 950, 1.2k, 12k, 340k, 3.4M, 1.2G."""
    if not math.isfinite(value):
        return str(value)
    sign, magnitude = ("-" if value < 0 else ""), abs(value)
    if magnitude >= 999.5:
        for suffix, scale in (("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12)):
            scaled = magnitude / scale
            text = _trim(f"{scaled:.1f}") if scaled < 99.95 else f"{scaled:.0f}"
            if float(text) < 1000 or suffix == "T":
                return sign + text + suffix
    if magnitude >= 99.5:
        return sign + f"{magnitude:.0f}"
    return sign + _trim(f"{magnitude:.3g}")


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text and "e" not in text else text


def format_seconds(seconds: float, *, minutes: bool) -> str:
    """``seconds`` as "75s", or as "1:15" (m:ss) when ``minutes``."""
    if not minutes:
        return f"{format_number(seconds)}s"
    minute, second = divmod(round(seconds), 60)
    return f"{minute}:{second:02d}"


def nice_step(raw: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is >= ``raw`` (1 when ``raw`` <= 0)."""
    if not (raw > 0 and math.isfinite(raw)):
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(f * power for f in (1, 2, 5, 10) if raw <= f * power * (1 + 1e-9))


def nice_ticks(lo: float, hi: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """Evenly spaced round ticks from one <= ``lo`` to one >= ``hi``, about ``count`` steps apart.

    The step is 1, 2 or 5 times a power of ten (at least 1 when ``integer``); an empty range is
    widened to one unit so there are always at least two ticks.
    """
    lo, hi = min(lo, hi), max(lo, hi)
    if hi - lo <= 0:
        hi = lo + 1
    step = nice_step((hi - lo) / max(count, 1))
    step = max(step, 1.0) if integer else step
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [float(f"{k * step:.12g}") for k in range(first, last + 1)]


def time_ticks(x0: float, x1: float, count: int = 6) -> list[float]:
    """Round times (s) inside [x0, x1], about ``count`` apart: 1-2-5-10-15-30 s or minutes."""
    raw = (x1 - x0) / max(count, 1)
    step = next((float(s) for s in _TIME_STEPS if s >= raw), nice_step(raw / 3600) * 3600)
    first, last = math.ceil(x0 / step - 1e-9), math.floor(x1 / step + 1e-9)
    return [k * step for k in range(first, last + 1)]


def _color(index: int, color: str | None) -> str:
    """The ``index``-th series' colour: its own, else the palette's, round and round."""
    return color or PALETTE[index % len(PALETTE)]


def _dash(index: int, color: str | None) -> str:
    """The ``index``-th line's dash pattern: dashed in every other round of the palette."""
    return DASH if color is None and (index // len(PALETTE)) % 2 == 1 else ""


def _scale(value: float, lo: float, hi: float, a: float, b: float) -> float:
    return a + (value - lo) / (hi - lo) * (b - a) if hi != lo else (a + b) / 2


def _text(x: float, y: float, content: str, anchor: str = "start") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{content}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str = "#999") -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}"/>'


def _open(title: str, width: int, height: int) -> list[str]:
    label = escape(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}"'
        f' height="{height}" role="img" aria-label="{label}"'
        ' font-family="system-ui, sans-serif" font-size="11" fill="#333">',
        f"<title>{label}</title>",
        f'<text x="4" y="15" font-size="13" font-weight="600">{label}</text>',
    ]


def _placeholder(title: str, width: int, height: int) -> str:
    box = f'x="{_LEFT}" y="{_TOP}" width="{width - _LEFT - _RIGHT}" height="{height - _TOP - 8}"'
    rect = f'<rect {box} fill="#f6f7f9" stroke="#ccc" stroke-dasharray="4 3"/>'
    note = _text(width / 2, (height + _TOP) / 2, "no data", "middle")
    return "".join([*_open(title, width, height), rect, note, "</svg>"])


def _legend(entries: Sequence[Entry], width: int) -> tuple[list[str], int]:
    """Legend swatches laid out in rows from y=0 (a dashed line for a dashed series); the
    markup and the number of rows."""
    parts: list[str] = []
    x, row = float(_LEFT), 0
    for name, color, dash in entries:
        item = 18 + 6.2 * len(name) + 14
        if x + item > width - _RIGHT and x > _LEFT:
            x, row = float(_LEFT), row + 1
        y = row * _LEGEND_ROW
        swatch = (
            f'<line x1="{x:.1f}" y1="{y + 7}" x2="{x + 12:.1f}" y2="{y + 7}"'
            f' stroke="{escape(color)}" stroke-width="2" stroke-dasharray="{dash}"/>'
            if dash
            else f'<rect x="{x:.1f}" y="{y + 3}" width="12" height="8" fill="{escape(color)}"/>'
        )
        parts += [swatch, _text(x + 16, y + 11, escape(name))]
        x += item
    return parts, (row + 1 if entries else 0)


def _canvas(
    title: str, entries: Sequence[Entry], ticks: Sequence[float], unit: str, size: Size
) -> tuple[list[str], Box]:
    """The chart's title, y grid with labels and legend, and the plot box they leave."""
    width, height = size
    legend, rows = _legend(entries, width)
    left, top, right = float(_LEFT), float(_TOP), float(width - _RIGHT)
    bottom = float(max(height - _BOTTOM - rows * _LEGEND_ROW, _TOP + 20))
    parts = [*_open(title, width, height), _text(left - 6, top - 10, escape(unit), "end")]
    for tick in ticks:
        y = _scale(tick, ticks[0], ticks[-1], bottom, top)
        label = _text(left - 6, y + 4, format_number(tick), "end")
        parts += [_line(left, y, right, y, "#e5e7eb"), label]
    parts.append(f'<g transform="translate(0,{bottom + _BOTTOM - 4:.1f})">{"".join(legend)}</g>')
    return parts, (left, top, right, bottom)


def _runs(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """The stretches of consecutive drawable points; a None or non-finite value ends one."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is not None and math.isfinite(x) and math.isfinite(y):
            runs[-1].append((x, y))
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def _stroke(xy: Sequence[tuple[float, float]], color: str, dash: str, step: bool) -> str:
    """One unbroken stretch of a line in plot coordinates, dashed by ``dash`` unless it is "";
    a single point is a dot."""
    (cx, cy), rest = xy[0], xy[1:]
    if not rest:
        return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" fill="{color}"/>'
    moves = "".join(f"H{x:.1f}V{y:.1f}" if step else f"L{x:.1f},{y:.1f}" for x, y in rest)
    dashes = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<path d="M{cx:.1f},{cy:.1f}{moves}" fill="none" stroke="{color}"'
        f' stroke-width="1.6"{dashes}/>'
    )


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    y_unit: str,
    width: int = 720,
    height: int = 220,
    y_min: float = 0.0,
    step: bool = False,
    y_max: float | None = None,
    integer: bool = False,
    x_range: tuple[float, float] | None = None,
) -> str:
    """An SVG chart of ``series`` over time, with a legend entry per series.

    A series without its own colour takes the palette's next one; past the palette's end the
    colours come round again, dashed every other round.

    The y axis spans at least [``y_min``, ``y_max``] and every value, on 1-2-5 ticks (whole
    numbers when ``integer``); the x axis spans ``x_range`` (default: the points') labelled in
    seconds, or m:ss from two minutes on. A None y breaks the line; a lone point is a dot;
    ``step`` holds each value until the next point. No drawable point at all: "no data".
    """
    lo_x, hi_x = x_range or (-math.inf, math.inf)
    runs = [_runs([p for p in s.points if lo_x <= p[0] <= hi_x]) for s in series]
    drawn = [p for r in runs for run in r for p in run]
    if not drawn:
        return _placeholder(title, width, height)
    x0, x1 = x_range or (min(x for x, _ in drawn), max(x for x, _ in drawn))
    x1 = x1 if x1 > x0 else x0 + 1
    ys = [y for _, y in drawn] + [y_min] + ([y_max] if y_max is not None else [])
    ticks = nice_ticks(min(ys), max(ys), integer=integer)
    y_lo, y_hi = ticks[0], ticks[-1]
    entries = [(s.name, _color(i, s.color), _dash(i, s.color)) for i, s in enumerate(series)]
    parts, (left, top, right, bottom) = _canvas(title, entries, ticks, y_unit, (width, height))
    minutes = x1 >= 120
    for tick in time_ticks(x0, x1):
        x = _scale(tick, x0, x1, left, right)
        label = format_seconds(tick, minutes=minutes)
        parts += [_line(x, bottom, x, bottom + 4), _text(x, bottom + 15, label, "middle")]
    parts.append(_line(left, bottom, right, bottom))
    for (_, color, dash), series_runs in zip(entries, runs, strict=True):
        for run in series_runs:
            xy = [
                (_scale(x, x0, x1, left, right), _scale(y, y_lo, y_hi, bottom, top)) for x, y in run
            ]
            parts.append(_stroke(xy, escape(color), dash, step))
    return "".join([*parts, "</svg>"])


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Bars],
    *,
    y_unit: str,
    stacked: bool = False,
    width: int = 720,
    height: int = 220,
) -> str:
    """An SVG bar chart: per category one bar per series side by side, or one ``stacked`` bar.

    The y axis starts at 0 (or below, for negative values side by side) on 1-2-5 ticks; each
    bar carries a tooltip with its series, category and value. No value at all: "no data".
    """

    def value(s: Bars, i: int) -> float | None:
        v = s.values[i] if i < len(s.values) else None
        return v if v is not None and math.isfinite(v) and (v >= 0 or not stacked) else None

    cells = [[value(s, i) for s in series] for i in range(len(categories))]
    present = [v for row in cells for v in row if v is not None]
    if not present:
        return _placeholder(title, width, height)
    tops = [sum(v for v in row if v is not None) for row in cells] if stacked else present
    ticks = nice_ticks(min([0.0, *present]), max([0.0, *tops]))
    entries = [(s.name, _color(i, s.color), "") for i, s in enumerate(series)]
    parts, (left, top, right, bottom) = _canvas(title, entries, ticks, y_unit, (width, height))
    band = (right - left) / len(categories)
    inner = band * 0.7
    bar_width = inner if stacked else inner / max(len(series), 1)
    zero = _scale(0.0, ticks[0], ticks[-1], bottom, top)
    for i, (category, row) in enumerate(zip(categories, cells, strict=True)):
        start, base = left + i * band + (band - inner) / 2, 0.0
        label = escape(category)
        parts.append(_text(left + (i + 0.5) * band, bottom + 15, label, "middle"))
        for j, (bars, v) in enumerate(zip(series, row, strict=True)):
            if v is None:
                continue
            lo, hi = (base, base + v) if stacked else (min(0.0, v), max(0.0, v))
            y_hi, y_lo = (_scale(b, ticks[0], ticks[-1], bottom, top) for b in (hi, lo))
            x = start if stacked else start + j * bar_width
            tip = f"{escape(bars.name)}, {label}: {format_number(v)} {escape(y_unit)}"
            size = f'width="{bar_width:.1f}" height="{y_lo - y_hi:.1f}"'
            fill = escape(_color(j, bars.color))
            bar = f'<rect x="{x:.1f}" y="{y_hi:.1f}" {size} fill="{fill}">'
            parts.append(f"{bar}<title>{tip}</title></rect>")
            base += v if stacked else 0.0
    parts.append(_line(left, zero, right, zero))
    return "".join([*parts, "</svg>"])
