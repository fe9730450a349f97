"""The monitor's p95 SLA judged per service from its summary over a run."""

from __future__ import annotations

from tripline.loadtest.monitor import service_verdicts


def test_each_service_with_a_p95_is_judged_against_the_limit() -> None:
    report = {
        "services": {
            "gateway": {"p95_ms": 120.0},
            "core": {"p95_ms": 650.5},
            "upload": {"p95_ms": None},
        }
    }
    verdicts = {v["name"]: v for v in service_verdicts(report, 500)}
    assert set(verdicts) == {"service.gateway.p95", "service.core.p95"}
    assert verdicts["service.gateway.p95"]["ok"] is True
    assert verdicts["service.core.p95"]["ok"] is False
    assert "breached" in verdicts["service.core.p95"]["message"]
    assert verdicts["service.core.p95"]["value"] == 650.5


def test_an_unreadable_monitor_is_a_failed_verdict_not_a_pass() -> None:
    [verdict] = service_verdicts(None, 500)
    assert verdict["ok"] is False
    assert verdict["value"] is None
    assert "could not be read" in verdict["message"]
