from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from tripline.loadtest.report_charts import charts_section

TITLES = (
    "Latency p95 per class",
    "Throughput per class",
    "Responses by status",
    "Shedding level",
    "Shed requests per priority",
    "Queue depth",
    "Documents processed",
    "CPU per process",
    "Memory (RSS) per process",
)


def charts(html: str) -> list[ET.Element]:
    """Every chart, parsed as XML (so each must be well formed)."""
    return [ET.fromstring(svg) for svg in re.findall(r"<svg .*?</svg>", html, re.S)]  # noqa: S314


def test_every_chart_on_the_samples_time_range() -> None:
    samples: list[dict[str, Any]] = [
        {"t": 100.0 + 2 * i, "documents_per_s": float(i), "queues": {"documents": {"depth": i}}}
        for i in range(61)
    ]
    html = charts_section(samples)
    titles = [svg.findtext("{http://www.w3.org/2000/svg}title") for svg in charts(html)]
    assert titles == list(TITLES)
    assert "61 samples over 120 s." in html
    assert html.count(">no data<") == 7
    assert html.count(">2:00<") == 2  # both drawn charts end at the last sample, in m:ss


def test_no_timed_sample_is_not_measured() -> None:
    html = charts_section([{"documents_per_s": 1.0}, {"t": "x"}])
    assert "Platform samples (platform.jsonl): not measured." in html
    assert "<svg" not in html
