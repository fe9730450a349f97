"""What a platform sample keeps of the gateway's ``/metrics``: read from the text the gateway's
real metric objects expose (``HttpMetrics`` and ``GatewayMetrics`` on one registry)."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, generate_latest

from tripline.common.metrics import LATENCY_BUCKETS, HttpMetrics
from tripline.common.routes import UNMATCHED
from tripline.gateway.metrics import GatewayMetrics
from tripline.gateway.shedding import Priority
from tripline.loadtest.gatewaymetrics import parse

BOUNDS = (*LATENCY_BUCKETS, math.inf)


def gateway_text() -> str:
    """A gateway under load: level 2 shedding, answers of every class, probes and scrapes, and
    a request no route took."""
    registry = CollectorRegistry()
    http = HttpMetrics(registry, "gateway")
    gateway = GatewayMetrics(registry)
    # read: three answered (one a HEAD), one shed
    http.record("GET", "/api/trips/{trip_id}", 200, 0.004)
    http.record("GET", "/api/trips/{trip_id}", 200, 0.02)
    http.record("HEAD", "/api/trips/{trip_id}", 200, 0.3)
    http.record("GET", "/api/trips/search", 503, 0.001)
    # critical
    http.record("POST", "/api/trips/{trip_id}/sos", 202, 0.003)
    http.record("POST", "/api/tracking/location", 202, 0.002)
    http.record("POST", "/api/tracking/location", 202, 0.007)
    # write, upload, payment
    http.record("POST", "/api/trips", 201, 0.06)
    http.record("POST", "/api/trips/{trip_id}/status", 409, 0.01)
    http.record("POST", "/api/uploads", 201, 0.04)
    http.record("POST", "/api/trips/{trip_id}/payment", 200, 1.7)
    # low: shed
    for _ in range(3):
        http.record("POST", "/api/analytics/events", 503, 0.0005)
    # no class: probes, scrapes, a 404 no route took
    http.record("GET", "/health/ready", 200, 0.001)
    http.record("GET", "/health/live", 200, 0.001)
    http.record("GET", "/metrics", 200, 0.002)
    http.record("GET", UNMATCHED, 404, 0.001)
    for _ in range(5):
        gateway.admitted(Priority.NORMAL)
    for _ in range(3):
        gateway.admitted(Priority.CRITICAL)
        gateway.shed(Priority.LOW)
    gateway.shed(Priority.NORMAL)
    gateway.shedding_level.set(2)
    gateway.loop_lag.observe(0.03)
    gateway.retried("core-1")
    gateway.degraded(True)
    return generate_latest(registry).decode()


def another_service_text() -> str:
    registry = CollectorRegistry()
    core = HttpMetrics(registry, "core")
    core.record("GET", "/api/trips/{trip_id}", 200, 0.004)
    return generate_latest(registry).decode()


def test_the_shedding_level_is_read() -> None:
    assert parse(gateway_text())["shedding_level"] == 2.0


def test_admission_is_counted_per_priority_and_outcome() -> None:
    assert parse(gateway_text())["admission"] == {
        "critical/admitted": 3.0,
        "normal/admitted": 5.0,
        "low/admitted": 0.0,
        "critical/shed": 0.0,
        "normal/shed": 1.0,
        "low/shed": 3.0,
    }


def test_answers_are_counted_per_class_and_status() -> None:
    assert parse(gateway_text())["responses"] == {
        "read": {"200": 3.0, "503": 1.0},
        "critical": {"202": 3.0},
        "write": {"201": 1.0, "409": 1.0},
        "upload": {"201": 1.0},
        "payment": {"200": 1.0},
        "low": {"503": 3.0},
    }


def test_latency_buckets_are_summed_per_class_over_routes_and_statuses() -> None:
    latency = parse(gateway_text())["latency"]
    # read: 0.001 and 0.004 by 5 ms, 0.02 by 25 ms, 0.3 by 500 ms.
    expected_read = [2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4]
    assert latency["read"] == {
        "buckets": [(bound, float(n)) for bound, n in zip(BOUNDS, expected_read, strict=True)],
        "count": 4.0,
    }
    assert latency["payment"]["buckets"][7:9] == [(1.0, 0.0), (2.5, 1.0)]
    assert set(latency) == {"read", "critical", "write", "upload", "payment", "low"}
    for cls, entry in latency.items():
        bounds = [bound for bound, _ in entry["buckets"]]
        counts = [n for _, n in entry["buckets"]]
        assert bounds == list(BOUNDS), cls
        assert counts == sorted(counts), cls
        assert counts[-1] == entry["count"] == sum(parse(gateway_text())["responses"][cls].values())


def test_probes_scrapes_and_unmatched_requests_are_left_out() -> None:
    text = gateway_text()
    for label in ("/health/ready", "/health/live", "/metrics", UNMATCHED):
        assert f'route="{label}"' in text
    parsed = parse(text)
    answered = sum(n for by_status in parsed["responses"].values() for n in by_status.values())
    # 14 requests of the contract; the 4 others are no class.
    assert answered == 14
    assert "404" not in {status for by in parsed["responses"].values() for status in by}


def test_another_services_request_metrics_are_left_out() -> None:
    parsed = parse(gateway_text() + another_service_text())
    assert parsed["responses"]["read"] == {"200": 3.0, "503": 1.0}
    assert parsed["latency"]["read"]["count"] == 4.0
    only_core = parse(another_service_text())
    assert only_core["responses"] == {}
    assert only_core["latency"] == {}


def test_classes_can_be_given() -> None:
    classes = {("GET", "/health/ready"): "probe", ("GET", "/api/trips/{trip_id}"): "trips"}
    parsed = parse(gateway_text(), classes)
    assert parsed["responses"] == {"probe": {"200": 1.0}, "trips": {"200": 2.0}}


def test_an_empty_text_has_no_level_and_no_counts() -> None:
    assert parse("") == {"shedding_level": None, "admission": {}, "responses": {}, "latency": {}}
