from __future__ import annotations

import copy
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tripline.loadtest.report import render_report, write_report

INF = math.inf
CHART_TITLES = (
    "Latency percentiles per class",
    "Answers by priority",
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
# The page's sections, in order.
SECTIONS = ("SLAs", "Release gate", "Figures", "Over time", "Files")
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
CLASSES = {"critical": 0.004, "read": 0.012, "write": 0.03}  # typical latency (s) per class


def full_summary() -> dict[str, Any]:
    """A complete summary of a failed smoke run, as the runner writes it: one SLA failed, one
    could not be measured, and the enforced gate failed one ratio."""
    return {
        "profile": "smoke",
        "description": "every path once, small enough for a shared 2-core machine",
        "target": "http://127.0.0.1:18480",
        "local": True,
        "started_at": "2026-12-05T23:40:00+00:00",
        "duration_s": 75.2,
        "commit": "532fde4",
        "ok": False,
        "concurrency": "200 users = 20 VUs x 10 people per VU; 20 subscribers = 2 trips x 10",
        "scenarios": {
            "users": {"description": "riders and drivers of a city", "peak_concurrent": 200},
            "tracking": {"description": "WebSocket subscribers", "peak_concurrent": 20},
        },
        "slas": [
            {
                "name": "latency.read.p95",
                "requirement": "10.4 read p95 under 300 ms",
                "limit": 300,
                "op": "<=",
                "unit": "ms",
                "value": 123.4,
                "ok": True,
                "message": "read p95 123.4 ms <= 300 ms",
            },
            {
                "name": "latency.critical.p99",
                "requirement": "10.2 critical p99 under 50 ms",
                "limit": 50,
                "op": "<=",
                "unit": "ms",
                "value": 61.5,
                "ok": False,
                "message": "critical p99 61.5 ms > 50 ms",
            },
            {
                "name": "service.p95",
                "requirement": "10.4",
                "limit": 500,
                "op": "<=",
                "unit": "ms",
                "value": None,
                "ok": False,
                "message": "service.p95: the monitor's metrics could not be read",
            },
            {
                "name": "k6.thresholds",
                "requirement": "10.4",
                "limit": None,
                "op": "",
                "unit": "",
                "value": None,
                "ok": False,
                "message": "k6 reports a crossed threshold the runner did not judge (k6.log)",
            },
        ],
        "gate": {
            "ok": False,
            "gated": True,
            "reference": {
                "name": "ref-laptop",
                "requests": 80000,
                "rps": 5000.0,
                "p50_ms": 1.2,
                "p95_ms": 4.5,
                "cpu_us_per_request": 120.0,
            },
            "ratios": [
                {
                    "name": "cpu_per_request",
                    "value": 6.4,
                    "baseline": 4.0,
                    "tolerance": 0.5,
                    "limit": 6.0,
                    "ok": False,
                },
                {
                    "name": "latency.read.p95",
                    "value": 1.1,
                    "baseline": 1.0,
                    "tolerance": 0.5,
                    "limit": 1.5,
                    "ok": True,
                },
            ],
            "failures": ["regression: cpu_per_request is 6.40x the reference"],
            "notes": [],
        },
        "figures": {
            "requests": 12345,
            "rps": 160.2,
            "errors": 3,
            "error_rate": 0.0002,
            "latency_ms": {
                "critical": {"count": 100, "p50": 5, "p95": 20, "p99": 61.5, "max": 80},
                "read": {"count": 9000, "p50": 12, "p95": 123.4, "p99": 180, "max": 400},
                "write": {"count": 3245, "p50": 30, "p95": 90, "p99": 150, "max": 900},
            },
            "status_counts": {"200": 11000, "201": 10, "202": 50, "429": 300, "503": 985},
            "by_priority": {
                "critical": {"requests": 100, "429": 0, "503": 0, "409": 0, "errors": 0},
                "normal": {"requests": 9000, "429": 100, "503": 285, "409": 0, "errors": 3},
                "low": {"requests": 3245, "429": 200, "503": 700, "409": 0, "errors": 0},
            },
            "sos": {"sent": 20, "accepted": 20},
            "trips": {"requested": 100, "accepted": 60, "completed": 58, "paid": 50},
            "tracking": {
                "subscribers": 100,
                "published": 500,
                "delivered": 5000,
                "lost": 0,
                "reconnects": 0,
                "unrecovered": 0,
                "latency_ms": {"count": 5000, "p50": 3, "p95": 10, "p99": 20, "max": 50},
            },
            "uploads": {
                "started": 20,
                "completed": 20,
                "verdicts": 20,
                "verified": 18,
                "rejected": 2,
                "failed": 0,
                "timed_out": 0,
                "time_to_verdict_ms": {
                    "count": 20,
                    "p50": 2000,
                    "p95": 5000,
                    "p99": 6000,
                    "max": 7000,
                },
            },
            "processes": {
                "gateway": {"cpu_s": 30.2, "cpu_share": 0.4, "rss_max_bytes": 80_000_000},
                "core": {"cpu_s": 20.1, "cpu_share": 0.27, "rss_max_bytes": 120_000_000},
                "k6": {"cpu_s": 25.0, "cpu_share": 0.33, "rss_max_bytes": 300_000_000},
            },
            "platform_cpu_s": 50.3,
            "capacity": {"saturated_first": "gateway"},
            "monitor": {
                "gateway": {
                    "requests": 12400,
                    "rps": 165.3,
                    "error_rate": 0.0003,
                    "p95_ms": 120.5,
                    "p99_ms": 175.0,
                },
                "core": {
                    "requests": 9100,
                    "rps": 121.3,
                    "error_rate": 0.0,
                    "p95_ms": 100.2,
                    "p99_ms": 150.9,
                },
            },
        },
        "files": {
            "k6_dashboard": "k6-dashboard.html",
            "k6_summary": "k6-summary.json",
            "platform": "platform.jsonl",
            "plan": "plan.json",
            "log": "run.log",
            "monitor": "monitor.json",
        },
    }


def shedding_level(i: int) -> int:
    return 2 if 20 <= i < 24 else 1 if 14 <= i < 28 else 0


def latency_share(le: float, typical: float, load: float) -> float:
    """The share of requests at most ``le`` seconds, for a class slowed down by ``load``."""
    return 1 - math.exp(-le / (typical * load))


def platform_samples(count: int = 40) -> list[dict[str, Any]]:
    """Samples every 2 s of a run that sheds in the middle, with a gateway restart at sample 30,
    a core restart at sample 25 and a failed gateway scrape at sample 10."""
    samples: list[dict[str, Any]] = []
    counters: dict[str, float] = {}

    def bump(key: str, by: float) -> float:
        counters[key] = counters.get(key, 0.0) + by
        return counters[key]

    for i in range(count):
        level = shedding_level(i)
        load = 1 + 0.15 * min(i, 20) if i < 28 else 1.5
        if i == 30:  # the gateway restarted: its counters start again
            counters = {k: v for k, v in counters.items() if not k.startswith("gw.")}
        latency: dict[str, Any] = {}
        responses: dict[str, dict[str, float]] = {}
        for name, typical in CLASSES.items():
            n = {"critical": 20, "read": 300, "write": 90}[name] * (0 if i == 0 else 1)
            shed = (
                0.0 if name == "critical" else n * (0.1 * level if name == "read" else 0.3 * level)
            )
            served = n - shed
            total = bump(f"gw.{name}.count", served)
            buckets: list[list[Any]] = []
            for le in BOUNDS:
                share = latency_share(le, typical, load)
                buckets.append([le, round(bump(f"gw.{name}.{le}", served * share))])
            buckets.append(["+Inf" if name == "read" else INF, round(total)])
            latency[name] = {"buckets": buckets, "count": round(total)}
            ok_status = {"critical": "202", "read": "200", "write": "201"}[name]
            responses[name] = {
                ok_status: round(bump(f"gw.{name}.ok", served)),
                "503": round(bump(f"gw.{name}.503", shed * 0.7)),
                "429": round(bump(f"gw.{name}.429", shed * 0.3)),
            }
        admission = {
            "critical/admitted": round(bump("gw.adm.critical", 20)),
            "normal/admitted": round(bump("gw.adm.normal", 300 - 30 * level)),
            "normal/shed": round(bump("gw.shed.normal", 30 * level)),
            "low/admitted": round(bump("gw.adm.low", 90 - 27 * level)),
            "low/shed": round(bump("gw.shed.low", 27 * level)),
        }
        if i == 25:  # core restarted: its cumulative CPU starts again
            counters["core.cpu"] = 0.0
        core_cpu = bump("core.cpu", 0.6 + 0.02 * i)
        sample: dict[str, Any] = {
            "t": 1765000000.5 + 2 * i,
            "processes": {
                "gateway": {"cpu_s": bump("gw.cpu", 0.9 + 0.03 * i), "rss_bytes": 70e6 + 5e5 * i},
                "core": {"cpu_s": core_cpu, "rss_bytes": 110e6 + (0 if i >= 25 else 1e6 * i)},
                "k6": {"cpu_s": bump("k6.cpu", 1.1), "rss_bytes": 250e6 + 1e6 * min(i, 20)},
            },
            "gateway": {
                "shedding_level": level,
                "admission": admission,
                "responses": responses,
                "latency": latency,
            },
            "queues": {
                "documents": {"depth": max(0, 40 - abs(22 - i) * 3), "rate_per_min": 600.0},
                "notifications": {"depth": i % 5, "rate_per_min": 120.0},
            },
            "documents_per_s": 9.5 + (i % 4) * 0.5,
        }
        if i == 10:
            del sample["gateway"]
        samples.append(sample)
    return samples


# -- the page ---------------------------------------------------------------------------------


def svgs(page: str) -> list[ET.Element]:
    """Every inline chart, parsed as XML (so each must be well formed)."""
    charts = re.findall(r"<svg .*?</svg>", page, re.DOTALL)
    return [ET.fromstring(chart) for chart in charts]  # noqa: S314 - our own output


def verdict_block(page: str) -> str:
    match = re.search(r'<div class="verdict.*?</div>(.*?)</div>', page, re.DOTALL)
    assert match
    return match.group(0)


def test_full_report_has_every_chart_and_the_failed_verdict() -> None:
    page = render_report(full_summary(), platform_samples())
    titles = [svg.findtext("{http://www.w3.org/2000/svg}title") for svg in svgs(page)]
    assert titles == list(CHART_TITLES)
    verdict = verdict_block(page)
    assert 'class="verdict fail"' in verdict
    assert ">FAIL<" in verdict
    assert "1 of 4 SLAs held; release gate enforced, failed." in verdict
    assert "latency.critical.p99" in verdict
    assert "<li>SLA service.p95: the monitor&#x27;s metrics could not be read</li>" in verdict
    assert "Gate: regression: cpu_per_request is 6.40x the reference" in verdict
    assert "latency.read.p95" not in verdict
    assert "no data" not in page
    for href in ("k6-dashboard.html", "k6-summary.json", "platform.jsonl", "run.log"):
        assert f'href="{href}"' in page
    assert "<script" not in page.lower()


def test_the_page_reads_from_the_verdict_and_the_load_down_to_the_files() -> None:
    page = render_report(full_summary(), platform_samples())
    order = [
        page.index("<h1>Load test report: smoke</h1>"),
        page.index("every path once"),
        page.index('<div class="verdict'),
        page.index("<h3>Load at the peak</h3>"),
        *(page.index(f"<h2>{title}</h2>") for title in SECTIONS),
    ]
    assert order == sorted(order)
    assert "<li>200 users = 20 VUs x 10 people per VU</li>" in page
    assert "<title>Load test · smoke · 2026-12-05T23:40:00+00:00</title>" in page


def test_full_report_tables() -> None:
    page = render_report(full_summary(), platform_samples())
    assert "10.2 critical p99 under 50 ms" in page
    assert '<tr class="bad"><td>latency.critical.p99</td>' in page
    assert "ref-laptop" in page
    assert "285 (3.17 %)" in page  # normal 503 share: 285 of 9000
    assert "200 (6.16 %)" in page  # low 429 share: 200 of 3245
    assert "80 MB" in page
    assert "<h3>Trips (users scenario)</h3>" in page
    assert "<h3>Per service, as the monitor saw it</h3>" in page
    # The unmeasured SLA says so rather than inventing a value; the one without a limit too.
    row = re.search(r'<tr class="bad"><td>service\.p95</td>.*?</tr>', page)
    assert row
    assert "not measured" in row.group(0)
    row = re.search(r'<tr class="bad"><td>k6\.thresholds</td>.*?</tr>', page)
    assert row
    assert '<span class="nm">none</span>' in row.group(0)


def test_a_passing_run() -> None:
    summary = full_summary()
    summary["ok"] = True
    summary["slas"] = [summary["slas"][0]]
    summary["gate"] = {**summary["gate"], "ok": True, "failures": [], "ratios": []}
    verdict = verdict_block(render_report(summary, []))
    assert 'class="verdict pass"' in verdict
    assert ">PASS<" in verdict
    assert "<li>" not in verdict


def test_a_deployment_run_has_no_reference_and_no_processes() -> None:
    summary = full_summary()
    summary["local"] = False
    summary["gate"] = {
        "ok": True,
        "ratios": [],
        "failures": [],
        "notes": ["a deployment's processes cannot be measured from here: no ratios, SLAs only"],
    }
    summary["figures"]["processes"] = {}
    summary["figures"]["capacity"] = {"saturated_first": None}
    page = render_report(summary, [{"t": 0, "queues": {"documents": {"depth": 1}}}])
    assert "release gate not applied." in verdict_block(page)
    assert "no ratios, SLAs only" in page
    assert "<h3>Reference</h3>" not in page
    assert "Processes: not measured." in page
    assert "no (deployment)" in page


@pytest.mark.parametrize(("summary", "samples"), [({}, []), ({"ok": None}, [{}, {"t": None}])])
def test_empty_input_renders_and_says_not_measured(
    summary: dict[str, Any], samples: list[dict[str, Any]]
) -> None:
    page = render_report(summary, samples)
    assert page.startswith("<!doctype html>")
    assert page.rstrip().endswith("</html>")
    assert "not measured" in page
    assert "NO VERDICT" in page
    assert "FAIL" not in page


def test_hostile_strings_are_escaped() -> None:
    hostile = '<script>alert("x")</script>'
    summary = full_summary()
    summary["profile"] = hostile
    summary["description"] = hostile
    summary["concurrency"] = hostile
    summary["scenarios"] = {hostile: {"description": hostile, "peak_concurrent": hostile}}
    summary["slas"][1]["name"] = hostile
    summary["slas"][1]["op"] = hostile
    summary["gate"]["notes"] = [hostile]
    summary["figures"]["latency_ms"][hostile] = {"p50": 1}
    summary["figures"]["monitor"][hostile] = {"requests": hostile}
    summary["figures"]["trips"][hostile] = 1
    summary["files"] = {hostile: "javascript:alert(1)", "log": '"><script>x</script>'}
    samples = platform_samples(4)
    samples[1]["queues"][hostile] = {"depth": 1}
    page = render_report(summary, samples)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert 'href="javascript' not in page
    svgs(page)


def paths_in(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key or index path inside nested dicts and lists."""
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else []
    )
    for key, child in items:
        yield (*prefix, key)
        yield from paths_in(child, (*prefix, key))


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    copied = copy.deepcopy(value)
    target = copied
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return copied


ODD_VALUES: tuple[Any, ...] = (None, "x", [], {}, -1, float("nan"), True, [[1]])


def test_summary_with_any_field_replaced_by_an_odd_value_renders() -> None:
    summary = full_summary()
    for path in paths_in(summary):
        for odd in ODD_VALUES:
            page = render_report(replaced(summary, path, odd), [])
            assert "</html>" in page


def test_samples_with_any_field_replaced_by_an_odd_value_render() -> None:
    samples = platform_samples(2)
    summary: dict[str, Any] = {}
    for path in paths_in(samples):
        for odd in ODD_VALUES:
            page = render_report(summary, replaced(samples, path, odd))
            assert "</html>" in page


def test_write_report_reads_the_run_dir(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps(full_summary()), encoding="utf-8")
    lines = [json.dumps(s) for s in platform_samples()]  # Infinity and "+Inf" bounds both
    lines.insert(5, "{not json")
    lines.insert(7, "[1, 2]")
    (tmp_path / "platform.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = write_report(tmp_path)
    assert path == tmp_path / "report.html"
    page = path.read_text(encoding="utf-8")
    assert "Infinity" in (tmp_path / "platform.jsonl").read_text(encoding="utf-8")
    assert page == render_report(full_summary(), platform_samples())


def test_write_report_without_input_files(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text("{truncated", encoding="utf-8")
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "not measured" in page
