"""The report's "Over time" section: the platform samples drawn as line charts on one time axis.

Latency, throughput and responses per interval, the gateway's shedding, the queues, and each
process's CPU and memory (the series come from :mod:`tripline.loadtest.report_series`). Pure;
returns escaped markup and never raises on odd samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tripline.loadtest.report_html import figure, missing, section
from tripline.loadtest.report_series import (
    LATENCY_QUANTILE,
    latency_series,
    process_series,
    queue_series,
    shedding_series,
    status_series,
    throughput_series,
    timeline,
)
from tripline.loadtest.svg import Series, line_chart

CHART_SIZE = (560, 240)


def charts_section(samples: Sequence[Mapping[str, Any]]) -> str:
    """Every chart over time, all on the x range of the samples; "not measured" without any
    sample that has a time."""
    by_time, xs = timeline(samples)
    if not by_time:
        return section("Over time", missing("Platform samples (platform.jsonl)"))
    x_range = (0.0, max(xs[-1], 1.0))
    width, height = CHART_SIZE

    def chart(
        title: str,
        series: Sequence[Series],
        unit: str,
        *,
        step: bool = False,
        y_max: float | None = None,
        integer: bool = False,
    ) -> str:
        return line_chart(
            title,
            series,
            y_unit=unit,
            width=width,
            height=height,
            x_range=x_range,
            step=step,
            y_max=y_max,
            integer=integer,
        )

    level, shed = shedding_series(by_time)
    queues, documents = queue_series(by_time)
    cpu, rss = process_series(by_time)
    figures = [
        figure(
            chart(f"Latency p{LATENCY_QUANTILE * 100:g} per class", latency_series(by_time), "ms"),
            "Per interval between samples, from the gateway's histograms (bucket interpolation).",
        ),
        figure(chart("Throughput per class", throughput_series(by_time), "req/s")),
        figure(chart("Responses by status", status_series(by_time), "resp/s")),
        figure(
            chart("Shedding level", [level], "level", step=True, y_max=2.0, integer=True),
            "0 admits all, 1 sheds low, 2 sheds low and normal.",
        ),
        figure(chart("Shed requests per priority", shed, "req/s")),
        figure(chart("Queue depth", queues, "items")),
        figure(chart("Documents processed", [documents], "docs/s")),
        figure(chart("CPU per process", cpu, "% core"), "100 % is one core."),
        figure(chart("Memory (RSS) per process", rss, "MB")),
    ]
    note = f'<p class="meta">{len(by_time)} samples over {xs[-1]:.0f} s.</p>'
    return section("Over time", note, f'<div class="grid">{"".join(figures)}</div>')
