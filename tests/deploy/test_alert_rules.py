"""deploy/prometheus/alerts.yml: a valid rule file, on metrics the services really export, with
the monitor's default thresholds; and, where ``promtool`` is installed, rules that fire on
synthetic series exactly when they should (``promtool test rules``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from tripline.core.app import create_app as create_core
from tripline.core.settings import CoreSettings
from tripline.gateway.app import create_app as create_gateway
from tripline.gateway.settings import GatewaySettings
from tripline.monitor.app import create_app as create_monitor
from tripline.monitor.settings import MonitorSettings
from tripline.tracking.app import create_app as create_tracking
from tripline.tracking.settings import TrackingSettings
from tripline.upload.app import create_app as create_upload
from tripline.upload.settings import UploadSettings

RULES_PATH = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
SEVERITIES = {"critical", "warning"}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}
APPS: dict[str, Callable[[], Starlette]] = {
    "gateway": lambda: create_gateway(GatewaySettings()),
    "core": lambda: create_core(CoreSettings()),
    "upload": lambda: create_upload(UploadSettings()),
    "tracking": lambda: create_tracking(TrackingSettings()),
    "monitor": lambda: create_monitor(MonitorSettings()),
}


def load_rules() -> dict[str, Any]:
    loaded = yaml.safe_load(RULES_PATH.read_text())
    assert isinstance(loaded, dict)
    return loaded


def alerting_rules() -> list[dict[str, Any]]:
    return [
        entry for group in load_rules()["groups"] for entry in group["rules"] if "alert" in entry
    ]


def rule(name: str) -> dict[str, Any]:
    (found,) = [candidate for candidate in alerting_rules() if candidate["alert"] == name]
    return found


def seconds(duration: str) -> float:
    return sum(int(n) * UNIT_S[unit] for n, unit in DURATION_PART.findall(duration))


def exposed_names(registry: CollectorRegistry) -> set[str]:
    """The sample names ``registry`` puts on ``/metrics``, children bound or not."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "summary": ("", "_count", "_sum"),
    }
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


@cache
def exported_names() -> frozenset[str]:
    """Every sample name any service exports, read from the apps' registries (no I/O)."""
    names: set[str] = set()
    for build in APPS.values():
        names |= exposed_names(build().state.metrics_registry)
    return frozenset(names)


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: what is left once strings, matchers, ranges,
    grouping labels, functions and keywords are taken out."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", bare)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    tokens = re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", bare)
    return {token for token in tokens if token.lower() not in PROMQL_WORDS}


def comparisons(expr: str) -> list[tuple[str, float]]:
    """``(operator, number)`` for every comparison with a literal, in order."""
    return [
        (op, float(number))
        for op, number in re.findall(r"(>=|<=|==|!=|>|<)\s*(?:bool\s+)?(-?\d+(?:\.\d+)?)", expr)
    ]


def ranges_s(expr: str) -> set[float]:
    return {seconds(window) for window in re.findall(r"\[(\w+)\]", expr)}


# The rule file's shape


def test_the_file_is_a_prometheus_rule_file() -> None:
    loaded = load_rules()
    assert set(loaded) == {"groups"}
    names = [group["name"] for group in loaded["groups"]]
    assert len(names) == len(set(names))
    for group in loaded["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert group["rules"]


@pytest.mark.parametrize("alert", alerting_rules(), ids=lambda alert: str(alert["alert"]))
def test_every_rule_is_complete(alert: dict[str, Any]) -> None:
    assert set(alert) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", alert["alert"])
    assert isinstance(alert["expr"], str)
    assert alert["expr"].strip()
    assert DURATION.match(alert["for"])
    assert alert["labels"]["severity"] in SEVERITIES
    assert alert["annotations"]["summary"].strip()
    assert alert["annotations"]["description"].strip()


def test_alert_names_are_unique() -> None:
    names = [alert["alert"] for alert in alerting_rules()]
    assert len(names) == len(set(names))


# The rules' metrics exist


def test_metric_names_are_found_in_expressions() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (service, le) (rate(a_bucket{route!~"/x|y"}[5m])))'
        " > 0.5 and on (service) sum by (service) (increase(b_total[5m])) >= 20"
    )
    assert metric_names(expr) == {"a_bucket", "b_total"}
    assert metric_names("max by (queue) (c) == 0") == {"c"}
    assert metric_names("d / e > 0.8") == {"d", "e"}


def test_a_counter_is_exposed_with_its_suffix() -> None:
    names = exposed_names(APPS["upload"]().state.metrics_registry)
    assert {"http_responses_total", "http_request_duration_seconds_bucket"} <= names
    assert "http_responses" not in names


def test_every_metric_used_is_exported_by_a_service() -> None:
    used = {name for alert in alerting_rules() for name in metric_names(alert["expr"])}
    assert used
    assert sorted(used - exported_names()) == []


# The rules' thresholds are the monitor's


@pytest.fixture(scope="module")
def defaults() -> MonitorSettings:
    return MonitorSettings()


def test_error_rate_rule_matches_the_monitor(defaults: MonitorSettings) -> None:
    expr = rule("TriplineHighErrorRate")["expr"]
    assert comparisons(expr) == [
        (">", defaults.alert_error_rate),
        (">=", defaults.alert_min_requests),
    ]
    assert ranges_s(expr) == {defaults.alert_error_window_s}
    assert {"http_server_errors_total", "http_responses_total"} <= metric_names(expr)


def test_latency_rule_matches_the_monitor(defaults: MonitorSettings) -> None:
    expr = rule("TriplineSlowResponses")["expr"]
    assert "histogram_quantile(0.95," in expr
    assert comparisons(expr) == [
        (">", defaults.alert_p95_sla_s),
        (">=", defaults.alert_min_requests),
    ]
    assert ranges_s(expr) == {defaults.alert_error_window_s}
    # Both the quantile and the request count leave out probes and scrapes.
    assert expr.count('route!~"/health.*|/metrics"') == 2


@pytest.mark.parametrize(
    ("alert", "setting", "metric"),
    [
        ("TriplineQueueDeep", "alert_queue_depth", "tripline_queue_depth"),
        ("TriplineQueueStale", "alert_queue_age_s", "tripline_queue_oldest_age_seconds"),
        ("TriplineBacklogLong", "alert_backlog", "tripline_backlog_length"),
        ("TriplineMongoPoolBusy", "alert_pool_use", "mongodb_pool_checked_out"),
    ],
)
def test_threshold_rules_match_the_monitor(
    defaults: MonitorSettings, alert: str, setting: str, metric: str
) -> None:
    expr = rule(alert)["expr"]
    assert comparisons(expr) == [(">", getattr(defaults, setting))]
    assert metric in metric_names(expr)


@pytest.mark.parametrize(
    ("alert", "metric"),
    [
        ("TriplineNoWorkers", "tripline_workers_online"),
        ("TriplineDependencyDown", "tripline_dependency_up"),
    ],
)
def test_zero_rules_fire_on_zero(alert: str, metric: str) -> None:
    expr = rule(alert)["expr"]
    assert comparisons(expr) == [("==", 0)]
    assert metric_names(expr) == {metric}


def test_a_dependency_must_be_down_for_a_minute() -> None:
    assert seconds(rule("TriplineDependencyDown")["for"]) == 60


# promtool, where it is installed (Debian's `prometheus` package ships it)


@pytest.fixture(scope="module")
def promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.skip("promtool is not installed (apt-get install prometheus, or set PROMTOOL)")
    return found


def test_promtool_accepts_the_rules(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES_PATH)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    rendered = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{rendered}}}", "values": values}


def traffic(
    service: str, route: str, per_minute: int, errors_per_minute: int
) -> list[dict[str, str]]:
    """Ten minutes of counters for one route: ``per_minute`` answers, ``errors_per_minute`` 5xx."""
    ok = per_minute - errors_per_minute
    result = [
        series(
            "http_responses_total",
            f"0+{ok}x10",
            service=service,
            method="GET",
            route=route,
            status_class="2xx",
        ),
        series(
            "http_server_errors_total", f"0+{errors_per_minute}x10", service=service, route=route
        ),
    ]
    if errors_per_minute:
        result.append(
            series(
                "http_responses_total",
                f"0+{errors_per_minute}x10",
                service=service,
                method="GET",
                route=route,
                status_class="5xx",
            )
        )
    return result


def latency(service: str, route: str, per_minute: int, slowest_le: float) -> list[dict[str, str]]:
    """Ten minutes of a histogram whose requests all take between the bucket below
    ``slowest_le`` and ``slowest_le``."""
    buckets = [0.1, 0.25, 0.5, 1.0, 2.5]
    result = [
        series(
            "http_request_duration_seconds_bucket",
            f"0+{per_minute if le >= slowest_le else 0}x10",
            service=service,
            method="GET",
            route=route,
            status="200",
            le=str(le),
        )
        for le in buckets
    ]
    result.append(
        series(
            "http_request_duration_seconds_bucket",
            f"0+{per_minute}x10",
            service=service,
            method="GET",
            route=route,
            status="200",
            le="+Inf",
        )
    )
    result.append(
        series(
            "http_request_duration_seconds_count",
            f"0+{per_minute}x10",
            service=service,
            method="GET",
            route=route,
            status="200",
        )
    )
    return result


def gauge(name: str, value: float, **labels: str) -> dict[str, str]:
    return series(name, f"{value:g}x10", instance="monitor:8084", **labels)


def expected(alert: str, labels: dict[str, str], summary: str) -> dict[str, Any]:
    """What promtool must find: ``labels``, ``summary``, and the description with its
    ``{{ $labels.x }}`` filled in (the descriptions use no other template)."""
    description = re.sub(
        r"\{\{ \$labels\.(\w+) \}\}",
        lambda match: labels[match.group(1)],
        rule(alert)["annotations"]["description"],
    )
    return {
        "exp_labels": labels,
        "exp_annotations": {"summary": summary, "description": description},
    }


def test_promtool_fires_each_rule_exactly_on_its_condition(promtool: str, tmp_path: Path) -> None:
    """Ten minutes of series: each alert fires for the subject over its threshold and not for
    the one at or under it (or with too little traffic, or only slow probes)."""
    input_series = [
        # gateway: 10% errors -> fires; core: 0.5% -> quiet; upload: 100% of 2/min -> too few.
        *traffic("gateway", "/api/trips", 100, 10),
        *traffic("core", "/api/trips", 200, 1),
        *traffic("upload", "/api/uploads", 2, 2),
        # gateway: user requests between 0.5 s and 1 s -> fires; core: only probes are slow.
        *latency("gateway", "/api/trips", 100, 1.0),
        *latency("core", "/health/ready", 100, 2.5),
        *latency("core", "/metrics", 100, 2.5),
        *latency("core", "/api/trips", 100, 0.1),
        gauge("tripline_queue_depth", 1001, queue="documents"),
        gauge("tripline_queue_depth", 1000, queue="payments"),
        gauge("tripline_queue_oldest_age_seconds", 301, queue="notifications"),
        gauge("tripline_queue_oldest_age_seconds", 300, queue="payments"),
        gauge("tripline_workers_online", 0, queue="system"),
        gauge("tripline_workers_online", 1, queue="payments"),
        gauge("tripline_backlog_length", 10001, backlog="core:writes"),
        gauge("tripline_backlog_length", 10000, backlog="tracking:points"),
        series(
            "tripline_dependency_up",
            "1 1 1 1 1 0 0 0 0 0 0",
            service="core",
            dependency="mongodb",
            instance="core:8081",
        ),
        series(
            "tripline_dependency_up",
            "1 1 1 1 1 1 1 1 1 1 0",
            service="core",
            dependency="redis",
            instance="core:8081",
        ),
        series("mongodb_pool_checked_out", "85x10", service="core", instance="core:8081"),
        series("mongodb_pool_max", "100x10", service="core", instance="core:8081"),
        series("mongodb_pool_checked_out", "80x10", service="upload", instance="upload:8082"),
        series("mongodb_pool_max", "100x10", service="upload", instance="upload:8082"),
    ]
    cases = {
        "TriplineHighErrorRate": [
            expected(
                "TriplineHighErrorRate",
                {"severity": "critical", "service": "gateway"},
                "gateway: 10% of requests failed over 5 min (limit 1%)",
            )
        ],
        "TriplineSlowResponses": [
            expected(
                "TriplineSlowResponses",
                {"severity": "warning", "service": "gateway"},
                "gateway: p95 latency 975ms over 5 min (SLA 500ms)",
            )
        ],
        "TriplineQueueDeep": [
            expected(
                "TriplineQueueDeep",
                {"severity": "warning", "queue": "documents"},
                "queue documents: 1001 jobs waiting (limit 1000)",
            )
        ],
        "TriplineQueueStale": [
            expected(
                "TriplineQueueStale",
                {"severity": "warning", "queue": "notifications"},
                "queue notifications: oldest job waiting 5m 1s (limit 5 min)",
            )
        ],
        "TriplineNoWorkers": [
            expected(
                "TriplineNoWorkers",
                {"severity": "critical", "queue": "system"},
                "queue system: no worker online",
            )
        ],
        "TriplineBacklogLong": [
            expected(
                "TriplineBacklogLong",
                {"severity": "warning", "backlog": "core:writes"},
                "backlog core:writes: 10001 entries (limit 10000)",
            )
        ],
        # mongodb has been down for five minutes; redis for less than the minute `for` asks.
        "TriplineDependencyDown": [
            expected(
                "TriplineDependencyDown",
                {
                    "severity": "critical",
                    "service": "core",
                    "dependency": "mongodb",
                    "instance": "core:8081",
                },
                "core: mongodb is down",
            )
        ],
        "TriplineMongoPoolBusy": [
            expected(
                "TriplineMongoPoolBusy",
                {"severity": "warning", "service": "core", "instance": "core:8081"},
                "core core:8081: MongoDB pool 85% in use (limit 80%)",
            )
        ],
    }
    tests = {
        "rule_files": [str(RULES_PATH)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series,
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": name, "exp_alerts": alerts}
                    for name, alerts in cases.items()
                ],
            }
        ],
    }
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [promtool, "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
