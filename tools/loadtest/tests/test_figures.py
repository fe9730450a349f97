"""A run's figures from a synthetic k6 summary (tagged submetrics as k6 writes them) and platform
samples of processes over time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tripline.loadtest.figures import compute, processes, trend

MB = 1_000_000
DURATION_S = 100.0


def counter(count: float) -> dict[str, Any]:
    return {
        "type": "counter",
        "contains": "default",
        "values": {"count": count, "rate": count / 100},
    }


def rate(passes: int, fails: int) -> dict[str, Any]:
    return {
        "type": "rate",
        "contains": "default",
        "values": {"rate": passes / (passes + fails), "passes": passes, "fails": fails},
    }


def timing(count: int, med: float, p95: float, p99: float, top: float) -> dict[str, Any]:
    values = {"avg": med, "min": 0.5, "med": med, "max": top, "p(90)": p95 * 0.9}
    values |= {"p(95)": p95, "p(99)": p99, "count": count}
    return {"type": "trend", "contains": "time", "values": values}


def responses(priority: str, **outcomes: int) -> dict[str, dict[str, Any]]:
    return {
        f"tl_responses{{priority:{priority},outcome:{outcome}}}": counter(n)
        for outcome, n in outcomes.items()
    }


def k6_summary() -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "http_reqs": counter(1_161),
        "http_req_duration": timing(1_161, 9.0, 70.0, 180.0, 900.0),
        "http_req_duration{class:critical}": timing(50, 3.0, 9.5, 14.25, 30.0),
        "http_req_duration{class:read}": timing(600, 8.0, 40.1234, 90.0, 400.0),
        "http_req_duration{class:write}": timing(300, 20.0, 80.0, 150.0, 700.0),
        "http_req_duration{class:low}": timing(100, 15.0, 60.0, 120.0, 300.0),
        "http_req_duration{class:storage}": timing(13, 120.0, 400.0, 500.0, 600.0),
        # Reported with an always-true threshold, but nothing was measured.
        "http_req_duration{class:payment}": {"type": "trend", "contains": "time", "values": {}},
        **responses("critical", ok=50, limited=0, shed=0, conflict=0, error=0),
        **responses("normal", ok=900, limited=30, shed=20, conflict=5, error=3),
        **responses("low", ok=100, limited=0, shed=40, conflict=0, error=0),
        **responses("storage", ok=12, limited=0, shed=0, conflict=0, error=1),
        "tl_status{status:200}": counter(1_000),
        "tl_status{status:202}": counter(62),
        "tl_status{status:409}": counter(5),
        "tl_status{status:429}": counter(30),
        "tl_status{status:503}": counter(60),
        "tl_status{status:500}": counter(0),
        "tl_errors": rate(4, 1_157),
        "tl_sos_ok": rate(4, 1),
        "tl_trips{step:requested}": counter(40),
        "tl_trips{step:accepted}": counter(30),
        "tl_trips{step:completed}": counter(25),
        "tl_trips{step:paid}": counter(20),
        "tl_subscribed": counter(100),
        "tl_published": counter(500),
        "tl_delivered": counter(4_990),
        "tl_events_lost": counter(10),
        "tl_reconnects": counter(2),
        "tl_delivery_ms": timing(4_990, 3.0, 10.0, 20.0, 50.0),
        "tl_uploads{step:presigned}": counter(13),
        "tl_uploads{step:completed}": counter(12),
        "tl_uploads{step:verdict}": counter(11),
        "tl_uploads{step:timed_out}": counter(1),
        "tl_uploads{verdict:verified}": counter(9),
        "tl_uploads{verdict:rejected}": counter(2),
        "tl_upload_verdict_ms": timing(11, 2_000.0, 5_000.0, 6_000.0, 7_000.0),
    }
    return {"root_group": {}, "options": {}, "metrics": metrics}


def usage(cpu_s: float, rss_mb: int) -> dict[str, float | int]:
    return {"cpu_s": cpu_s, "rss_bytes": rss_mb * MB}


def samples() -> list[dict[str, Any]]:
    """Every 25 s: the gateway works hardest of the platform; k6 and the reference (loaders)
    use more CPU than any of it; the worker appears late; one sample had no process reading."""
    return [
        {
            "t": 1000.0,
            "processes": {
                "gateway": usage(10.0, 50),
                "core": usage(5.0, 120),
                "k6": usage(100.0, 300),
                "reference": usage(1.0, 40),
            },
        },
        {"t": 1025.0, "processes": None, "documents_per_s": None},
        {
            "t": 1050.0,
            "processes": {
                "gateway": usage(30.0, 80),
                "core": usage(20.0, 110),
                "k6": usage(160.0, 320),
                "reference": usage(1.0, 40),
                "worker": usage(3.0, 200),
            },
        },
        {
            "t": 1100.0,
            "processes": {
                "gateway": usage(50.0, 70),
                "core": usage(25.0, 130),
                "k6": usage(200.0, 310),
                "reference": usage(81.0, 45),
                "worker": usage(4.0, 210),
            },
        },
    ]


def figures() -> dict[str, Any]:
    return compute(k6_summary(), samples(), DURATION_S)


def test_requests_count_the_platforms_answers_and_leave_storage_out() -> None:
    result = figures()
    # critical 50 + normal 958 + low 140; the 13 straight to storage are not the platform's.
    assert result["requests"] == 1_148
    assert result["rps"] == 11.48


def test_answers_are_counted_per_priority_and_outcome() -> None:
    assert figures()["by_priority"] == {
        "critical": {"requests": 50, "429": 0, "503": 0, "409": 0, "errors": 0},
        "normal": {"requests": 958, "429": 30, "503": 20, "409": 5, "errors": 3},
        "low": {"requests": 140, "429": 0, "503": 40, "409": 0, "errors": 0},
        "storage": {"requests": 13, "429": 0, "503": 0, "409": 0, "errors": 1},
    }


def test_a_priority_without_answers_is_left_out() -> None:
    summary = k6_summary()
    for name in [n for n in summary["metrics"] if n.startswith("tl_responses{priority:low,")]:
        summary["metrics"][name] = counter(0)
    result = compute(summary, samples(), DURATION_S)
    assert "low" not in result["by_priority"]
    assert result["requests"] == 1_008


def test_errors_and_statuses() -> None:
    result = figures()
    assert result["errors"] == 4
    assert result["error_rate"] == pytest.approx(4 / 1_161)
    # Statuses nobody got (the 500 counter at 0) are not listed.
    assert result["status_counts"] == {"200": 1_000, "202": 62, "409": 5, "429": 30, "503": 60}


def test_latency_per_class_as_a_trend_with_measured_classes_only() -> None:
    latency = figures()["latency_ms"]
    assert set(latency) == {"critical", "read", "write", "low", "storage"}
    assert latency["read"] == {"count": 600, "p50": 8.0, "p95": 40.123, "p99": 90.0, "max": 400.0}


def test_sos_sent_and_accepted() -> None:
    assert figures()["sos"] == {"sent": 5, "accepted": 4}


def test_trip_steps() -> None:
    assert figures()["trips"] == {"requested": 40, "accepted": 30, "completed": 25, "paid": 20}


def test_tracking_counts_and_delivery_latency() -> None:
    assert figures()["tracking"] == {
        "subscribers": 100,
        "published": 500,
        "delivered": 4_990,
        "lost": 10,
        "reconnects": 2,
        "unrecovered": 0,
        "latency_ms": {"count": 4_990, "p50": 3.0, "p95": 10.0, "p99": 20.0, "max": 50.0},
    }


def test_uploads_by_step_and_verdict() -> None:
    assert figures()["uploads"] == {
        "started": 13,
        "completed": 12,
        "verdicts": 11,
        "verified": 9,
        "rejected": 2,
        "failed": 0,
        "timed_out": 1,
        "time_to_verdict_ms": {
            "count": 11,
            "p50": 2_000.0,
            "p95": 5_000.0,
            "p99": 6_000.0,
            "max": 7_000.0,
        },
    }


def test_processes_cpu_over_the_run_its_share_and_the_most_memory() -> None:
    used = figures()["processes"]
    assert list(used) == ["core", "gateway", "k6", "reference", "worker"]
    assert used["gateway"] == {"cpu_s": 40.0, "cpu_share": 0.4, "rss_max_bytes": 80 * MB}
    assert used["core"] == {"cpu_s": 20.0, "cpu_share": 0.2, "rss_max_bytes": 130 * MB}
    # The worker counts from its first reading, not from zero.
    assert used["worker"] == {"cpu_s": 1.0, "cpu_share": 0.01, "rss_max_bytes": 210 * MB}
    assert used["k6"]["cpu_s"] == 100.0


def test_platform_cpu_leaves_out_k6_and_the_reference() -> None:
    result = figures()
    assert result["platform_cpu_s"] == 61.0
    assert result["processes"]["reference"]["cpu_s"] == 80.0


def test_the_busiest_platform_process_saturated_first_not_a_loader() -> None:
    assert figures()["capacity"] == {"saturated_first": "gateway"}


def test_a_run_without_samples_has_no_processes_and_no_saturation() -> None:
    result = compute(k6_summary(), [], DURATION_S)
    assert result["processes"] == {}
    assert result["platform_cpu_s"] == 0
    assert result["capacity"] == {"saturated_first": None}


def test_a_run_of_no_duration_has_no_rates() -> None:
    result = compute(k6_summary(), samples(), 0.0)
    assert result["rps"] is None
    assert all(p["cpu_share"] is None for p in result["processes"].values())


def test_an_empty_summary_gives_zeros_and_no_trends() -> None:
    result = compute({}, [], DURATION_S)
    assert result["requests"] == 0
    assert result["by_priority"] == {}
    assert result["latency_ms"] == {}
    assert result["error_rate"] is None
    assert result["sos"] == {"sent": 0, "accepted": 0}
    assert result["tracking"]["latency_ms"] is None
    assert result["uploads"]["time_to_verdict_ms"] is None


def test_trend_is_none_without_samples() -> None:
    empty: Mapping[str, float] = {}
    assert trend(empty) is None
    assert trend({"count": 3, "med": 1.23456}) == {
        "count": 3,
        "p50": 1.235,
        "p95": 0.0,
        "p99": 0.0,
        "max": 0.0,
    }


def test_processes_of_one_sample_used_no_cpu() -> None:
    only = [{"t": 0.0, "processes": {"core": usage(12.0, 90)}}]
    assert processes(only, 10.0) == {
        "core": {"cpu_s": 0.0, "cpu_share": 0.0, "rss_max_bytes": 90 * MB}
    }
