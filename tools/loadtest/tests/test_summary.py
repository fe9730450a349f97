"""How a run is told: the concurrency in words and the closing lines."""

from __future__ import annotations

from pathlib import Path

from tripline.loadtest.profiles import parse
from tripline.loadtest.summary import concurrency_text, text_summary

PROFILES = Path(__file__).resolve().parents[3] / "tests" / "load" / "profiles.yaml"


def test_the_full_profile_counts_the_owners_numbers_and_says_how() -> None:
    text = concurrency_text(parse(PROFILES.read_text(), "full"))
    assert "10000 users = 500 VUs x 20 people per VU" in text
    assert "7000 uploads = 350 VUs x 20 uploads in flight" in text
    assert "3000 subscribers = 300 trips x 10 watchers" in text


def test_the_closing_lines_give_the_verdict_every_sla_and_the_gate() -> None:
    summary = {
        "profile": "smoke",
        "target": "http://127.0.0.1:1",
        "ok": False,
        "figures": {
            "requests": 10,
            "rps": 1.0,
            "errors": 0,
            "sos": {"accepted": 1, "sent": 1},
            "tracking": {"delivered": 5, "lost": 0},
            "uploads": {"verdicts": 2},
            "latency_ms": {"read": {"count": 10, "p50": 1.0, "p95": 2.0, "p99": 3.0}},
        },
        "slas": [{"ok": False, "message": "latency.read.p95 breached: 2 ms"}],
        "gate": {
            "ratios": [
                {
                    "name": "cpu_per_request",
                    "value": 2.0,
                    "baseline": 1.0,
                    "limit": 1.5,
                    "ok": False,
                }
            ],
            "failures": ["regression: cpu_per_request"],
        },
    }
    lines = text_summary(summary)
    assert lines[0].endswith("FAIL")
    assert "  FAIL latency.read.p95 breached: 2 ms" in lines
    assert any(line.startswith("  FAIL ratio cpu_per_request 2.0x") for line in lines)
    assert "  FAIL regression: cpu_per_request" in lines
