"""The release gate's regression check: a run's ratios to the reference of the same run, against
the committed baseline with a tolerance."""

from __future__ import annotations

from typing import Any

import pytest

from tripline.loadtest.gate import COMPARED_CLASSES, Ratio, Reference, compare, ratios

REFERENCE = Reference(requests=40_000, rps=5000.0, p50_ms=1.2, p95_ms=4.0, cpu_us_per_request=50.0)


def figures(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "requests": 120_000,
        "platform_cpu_s": 30.0,
        "latency_ms": {
            "read": {"count": 90_000, "p50": 8.0, "p95": 24.0, "p99": 60.0, "max": 300.0},
            "critical": {"count": 5_000, "p50": 2.0, "p95": 6.0, "p99": 12.0, "max": 40.0},
            "write": {"count": 25_000, "p50": 20.0, "p95": 80.0, "p99": 150.0, "max": 900.0},
        },
    }
    base.update(overrides)
    return base


# Ratios


LATENCY_RATIOS = {f"latency.{cls}.p95" for cls in COMPARED_CLASSES}


def test_ratios_with_cpu_divide_cpu_per_request_and_p95_by_the_references() -> None:
    measured = ratios(figures(), REFERENCE)
    assert set(measured) == {"cpu_per_request", *LATENCY_RATIOS}
    # 30 s over 120,000 requests is 250 us a request, five times the reference's 50 us.
    assert measured["cpu_per_request"] == pytest.approx(5.0)
    # 24 ms over the reference's 4 ms.
    assert measured["latency.read.p95"] == pytest.approx(6.0)


def test_ratios_compare_read_latency_and_leave_write_out() -> None:
    assert "read" in COMPARED_CLASSES
    assert "write" not in COMPARED_CLASSES
    assert not any("write" in name for name in ratios(figures(), REFERENCE))


@pytest.mark.parametrize(
    ("changes", "reference"),
    [
        ({}, Reference(40_000, 5000.0, 1.2, 4.0, None)),
        ({}, Reference(40_000, 5000.0, 1.2, 4.0, 0.0)),
        ({"platform_cpu_s": 0.0}, REFERENCE),
        ({"platform_cpu_s": None}, REFERENCE),
        ({"requests": 0}, REFERENCE),
    ],
    ids=[
        "reference-cpu-unknown",
        "reference-cpu-zero",
        "no-platform-cpu",
        "platform-cpu-none",
        "no-requests",
    ],
)
def test_ratios_without_cpu_leave_cpu_per_request_out(
    changes: dict[str, Any], reference: Reference
) -> None:
    measured = ratios(figures(**changes), reference)
    assert "cpu_per_request" not in measured
    assert set(measured) == LATENCY_RATIOS


def test_ratios_without_a_class_or_a_reference_p95_leave_latency_out() -> None:
    no_read = figures(latency_ms={"write": {"p95": 12.0}})
    assert "latency.read.p95" not in ratios(no_read, REFERENCE)
    no_p95 = Reference(40_000, 5000.0, 1.2, 0.0, 50.0)
    assert set(ratios(figures(), no_p95)) == {"cpu_per_request"}
    assert ratios({}, REFERENCE) == {}


def test_the_reference_is_shown_rounded() -> None:
    shown = Reference(40_123, 5012.345, 1.23456, 4.98765, 49.87654).as_json()
    assert shown["requests"] == 40_123
    assert shown["rps"] == 5012.3
    assert (shown["p50_ms"], shown["p95_ms"]) == (1.235, 4.988)
    assert shown["cpu_us_per_request"] == 49.877
    assert Reference(1, 1.0, 1.0, 1.0, None).as_json()["cpu_us_per_request"] is None


# Against the baseline


def test_ratios_within_the_tolerance_pass() -> None:
    result = compare(
        {"cpu_per_request": 5.9, "latency.read.p95": 6.0},
        {"cpu_per_request": 4.0, "latency.read.p95": 5.0},
        0.5,
    )
    assert result.ok
    assert result.failures == ()
    assert [(r.name, r.limit, r.ok) for r in result.ratios] == [
        ("cpu_per_request", 6.0, True),
        ("latency.read.p95", 7.5, True),
    ]


def test_a_ratio_at_its_limit_passes() -> None:
    assert compare({"latency.read.p95": 3.0}, {"latency.read.p95": 2.0}, 0.5).ok


def test_a_ratio_over_its_limit_fails_naming_the_ratio_and_the_numbers() -> None:
    result = compare(
        {"cpu_per_request": 6.4, "latency.read.p95": 5.0},
        {"cpu_per_request": 4.0, "latency.read.p95": 5.0},
        0.5,
    )
    assert not result.ok
    assert result.failures == (
        "regression: cpu_per_request is 6.40x the reference, over the baseline 4.00x + 50% = 6.00x",
    )
    (cpu,) = [r for r in result.ratios if r.name == "cpu_per_request"]
    assert cpu.as_json() == {
        "name": "cpu_per_request",
        "value": 6.4,
        "baseline": 4.0,
        "tolerance": 0.5,
        "limit": 6.0,
        "ok": False,
    }


def test_a_missing_baseline_fails_even_with_every_ratio_low() -> None:
    result = compare({"cpu_per_request": 0.1, "latency.read.p95": 0.1}, None, 0.5)
    assert not result.ok
    assert result.failures == (
        "no baseline for this profile: record one with make loadtest-baseline",
    )
    assert all(r.baseline is None and r.limit is None for r in result.ratios)


def test_a_baseline_ratio_the_run_did_not_measure_fails() -> None:
    result = compare(
        {"latency.read.p95": 5.0},
        {"cpu_per_request": 4.0, "latency.read.p95": 5.0},
        0.5,
    )
    assert not result.ok
    assert result.failures == (
        "regression: cpu_per_request was not measured, but the baseline has it",
    )


def test_rows_are_sorted_by_name() -> None:
    measured = {"latency.read.p95": 1.0, "cpu_per_request": 1.0, "latency.critical.p95": 1.0}
    names = [r.name for r in compare(measured, dict(measured), 0.1).ratios]
    assert names == ["cpu_per_request", "latency.critical.p95", "latency.read.p95"]


def test_a_ratio_without_a_baseline_has_no_limit() -> None:
    row = Ratio("latency.critical.p95", 9.0, None, 0.5)
    assert row.limit is None
    assert row.ok
    assert row.as_json()["limit"] is None
