"""The SLA numbers live in three places that must say the same: ``tests/load/sla.yaml`` (the load
test's thresholds), the monitor's alert defaults (``MonitorSettings``: ALERT_ERROR_RATE,
ALERT_P95_SLA_S) and ``deploy/prometheus/alerts.yml`` (TriplineHighErrorRate,
TriplineSlowResponses). A drift fails here with a message saying which file to change.

The alert expressions are read as ``tests/deploy/test_alert_rules.py`` reads them: every
comparison of the expression with a literal number, in order."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from tripline.loadtest.sla import SlaFile, parse
from tripline.monitor.settings import MonitorSettings

REPO = Path(__file__).resolve().parents[3]
SLA_FILE = "tests/load/sla.yaml"
ALERTS_FILE = "deploy/prometheus/alerts.yml"
MONITOR_FILE = "services/monitor/src/tripline/monitor/settings.py"
ERROR_RULE = "TriplineHighErrorRate"
LATENCY_RULE = "TriplineSlowResponses"


def comparisons(expr: str) -> list[tuple[str, float]]:
    """``(operator, number)`` for every comparison with a literal, in order (as
    tests/deploy/test_alert_rules.py reads the rules)."""
    return [
        (op, float(number))
        for op, number in re.findall(r"(>=|<=|==|!=|>|<)\s*(?:bool\s+)?(-?\d+(?:\.\d+)?)", expr)
    ]


def alert_rules(text: str) -> dict[str, dict[str, Any]]:
    loaded = yaml.safe_load(text)
    return {
        rule["alert"]: rule
        for group in loaded["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def alert_threshold(rules: Mapping[str, Mapping[str, Any]], name: str) -> float:
    """The number an alert fires above: its expression's first ``>`` comparison."""
    above = [number for op, number in comparisons(rules[name]["expr"]) if op == ">"]
    assert above, f"{ALERTS_FILE}: {name} compares nothing with '>'"
    return above[0]


@dataclass(frozen=True)
class Sources:
    """The numbers each file holds, in the SLA file's units."""

    sla_error_rate: float
    sla_service_p95_ms: float
    monitor_error_rate: float
    monitor_p95_ms: float
    alert_error_rate: float
    alert_p95_ms: float


def read_sources(sla: SlaFile, monitor: MonitorSettings, rules_text: str) -> Sources:
    rules = alert_rules(rules_text)
    return Sources(
        sla_error_rate=sla.error_rate,
        sla_service_p95_ms=sla.service_p95_ms,
        monitor_error_rate=monitor.alert_error_rate,
        monitor_p95_ms=monitor.alert_p95_sla_s * 1000,
        alert_error_rate=alert_threshold(rules, ERROR_RULE),
        alert_p95_ms=alert_threshold(rules, LATENCY_RULE) * 1000,
    )


def disagreement(what: str, held: Mapping[str, tuple[str, float]]) -> str | None:
    """None when every file holds the same number for ``what``; else a message naming each
    file's number and the file to change: the one that differs from the others, or all of
    them when no two agree."""
    values = {file: value for file, (_, value) in held.items()}
    agreeing = {
        file: [other for other, v in values.items() if math.isclose(v, value)]
        for file, value in values.items()
    }
    if all(len(same) == len(values) for same in agreeing.values()):
        return None
    most = max(len(same) for same in agreeing.values())
    if most > 1:
        to_change = [file for file, same in agreeing.items() if len(same) < most]
    else:
        to_change = list(values)
    said = "; ".join(f"{file} has {setting} = {value:g}" for file, (setting, value) in held.items())
    return f"{what} disagrees: {said}. Change {' and '.join(to_change)} to agree."


def disagreements(sources: Sources) -> list[str]:
    checks = {
        "the error rate": {
            SLA_FILE: ("error_rate", sources.sla_error_rate),
            MONITOR_FILE: ("alert_error_rate (ALERT_ERROR_RATE)", sources.monitor_error_rate),
            ALERTS_FILE: (f"{ERROR_RULE} '> x'", sources.alert_error_rate),
        },
        "the service p95 in ms": {
            SLA_FILE: ("service_p95_ms", sources.sla_service_p95_ms),
            MONITOR_FILE: ("alert_p95_sla_s (ALERT_P95_SLA_S) x 1000", sources.monitor_p95_ms),
            ALERTS_FILE: (f"{LATENCY_RULE} '> x' x 1000", sources.alert_p95_ms),
        },
    }
    return [
        message
        for what, held in checks.items()
        if (message := disagreement(what, held)) is not None
    ]


@pytest.fixture
def monitor_defaults(monkeypatch: pytest.MonkeyPatch) -> MonitorSettings:
    """``MonitorSettings()`` with nothing in the environment overriding its alert defaults."""
    for name in ("ALERT_ERROR_RATE", "ALERT_P95_SLA_S"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return MonitorSettings()


@pytest.fixture
def real(monitor_defaults: MonitorSettings) -> Sources:
    sla = parse((REPO / SLA_FILE).read_text())
    return read_sources(sla, monitor_defaults, (REPO / ALERTS_FILE).read_text())


# The real files agree


def test_sla_yaml_agrees_with_the_monitor_and_the_alert_rules(real: Sources) -> None:
    assert disagreements(real) == []


def test_the_sla_error_rate_is_the_monitors_alert_error_rate(
    monitor_defaults: MonitorSettings, real: Sources
) -> None:
    assert real.sla_error_rate == monitor_defaults.alert_error_rate, disagreements(real)


def test_the_sla_service_p95_is_the_monitors_p95_sla(
    monitor_defaults: MonitorSettings, real: Sources
) -> None:
    assert real.sla_service_p95_ms == pytest.approx(monitor_defaults.alert_p95_sla_s * 1000), (
        disagreements(real)
    )


def test_the_high_error_rate_alert_fires_above_the_sla_error_rate(real: Sources) -> None:
    rules = alert_rules((REPO / ALERTS_FILE).read_text())
    assert comparisons(rules[ERROR_RULE]["expr"])[0] == (">", real.sla_error_rate)


def test_the_slow_responses_alert_fires_above_the_sla_service_p95(real: Sources) -> None:
    rules = alert_rules((REPO / ALERTS_FILE).read_text())
    expr = rules[LATENCY_RULE]["expr"]
    assert "histogram_quantile(0.95," in expr
    op, seconds = comparisons(expr)[0]
    assert op == ">"
    assert seconds == pytest.approx(real.sla_service_p95_ms / 1000)


def test_the_alerts_summaries_state_the_sla_numbers(real: Sources) -> None:
    rules = alert_rules((REPO / ALERTS_FILE).read_text())
    error_summary = rules[ERROR_RULE]["annotations"]["summary"]
    latency_summary = rules[LATENCY_RULE]["annotations"]["summary"]
    assert f"(limit {real.sla_error_rate * 100:g}%)" in error_summary
    assert f"(SLA {real.sla_service_p95_ms:g}ms)" in latency_summary


def test_the_alert_thresholds_are_read_from_the_expressions() -> None:
    text = """
groups:
  - name: g
    rules:
      - alert: TriplineHighErrorRate
        expr: (sum(rate(a[5m])) / sum(rate(b[5m]))) > 0.02 and sum(increase(b[5m])) >= 20
      - alert: TriplineSlowResponses
        expr: histogram_quantile(0.95, sum by (le) (rate(c_bucket[5m]))) > 0.75
"""
    rules = alert_rules(text)
    assert alert_threshold(rules, ERROR_RULE) == 0.02
    assert alert_threshold(rules, LATENCY_RULE) == 0.75


# A drift says which file to change


@pytest.mark.parametrize(
    ("changed", "to_change", "setting"),
    [
        ({"sla_error_rate": 0.02}, SLA_FILE, "error_rate = 0.02"),
        ({"monitor_error_rate": 0.05}, MONITOR_FILE, "alert_error_rate (ALERT_ERROR_RATE) = 0.05"),
        ({"alert_error_rate": 0.1}, ALERTS_FILE, f"{ERROR_RULE} '> x' = 0.1"),
        ({"sla_service_p95_ms": 300.0}, SLA_FILE, "service_p95_ms = 300"),
        ({"monitor_p95_ms": 800.0}, MONITOR_FILE, "x 1000 = 800"),
        ({"alert_p95_ms": 250.0}, ALERTS_FILE, f"{LATENCY_RULE} '> x' x 1000 = 250"),
    ],
    ids=[
        "sla-error-rate",
        "monitor-error-rate",
        "alert-error-rate",
        "sla-p95",
        "monitor-p95",
        "alert-p95",
    ],
)
def test_a_drift_names_the_file_that_differs(
    real: Sources, changed: dict[str, float], to_change: str, setting: str
) -> None:
    (message,) = disagreements(replace(real, **changed))
    assert message.endswith(f"Change {to_change} to agree.")
    assert setting in message
    for file in (SLA_FILE, MONITOR_FILE, ALERTS_FILE):
        assert file in message


def test_a_drift_without_a_majority_names_every_file(real: Sources) -> None:
    drifted = replace(real, sla_error_rate=0.02, alert_error_rate=0.03)
    (message,) = disagreements(drifted)
    assert message.startswith("the error rate disagrees:")
    assert message.endswith(f"Change {SLA_FILE} and {MONITOR_FILE} and {ALERTS_FILE} to agree.")


def test_a_drift_in_the_real_sla_file_is_caught(monitor_defaults: MonitorSettings) -> None:
    text = (REPO / SLA_FILE).read_text()
    drifted, count = re.subn(r"(?m)^service_p95_ms: \d+", "service_p95_ms: 450", text)
    assert count == 1
    sources = read_sources(parse(drifted), monitor_defaults, (REPO / ALERTS_FILE).read_text())
    (message,) = disagreements(sources)
    assert f"{SLA_FILE} has service_p95_ms = 450" in message
    assert message.endswith(f"Change {SLA_FILE} to agree.")
