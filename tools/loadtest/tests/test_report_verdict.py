from __future__ import annotations

import re
from typing import Any

from tripline.loadtest.report_verdict import failures, gate_section, slas_section, verdict

REFERENCE = {
    "name": "Starlette JSON endpoint",
    "requests": 80627,
    "rps": 1612.4,
    "p50_ms": 1.2,
    "p95_ms": 4.565,
    "cpu_us_per_request": 64.867,
}


def ratio(name: str, value: float, baseline: float | None, ok: bool = True) -> dict[str, Any]:
    limit = None if baseline is None else baseline * 1.5
    return {
        "name": name,
        "value": value,
        "baseline": baseline,
        "tolerance": 0.5,
        "limit": limit,
        "ok": ok,
    }


def local_gate(*, gated: bool, ok: bool = True) -> dict[str, Any]:
    """A gate as the runner writes it for a private stack (see run.execute)."""
    failed = ["regression: cpu_per_request is 6.40x the reference"] if not ok else []
    return {
        "ok": ok or not gated,
        "gated": gated,
        "reference": REFERENCE,
        "ratios": [ratio("cpu_per_request", 6.4, 4.0, ok), ratio("latency.read.p95", 9.2, None)],
        "failures": failed if gated else [],
        "notes": [] if gated else failed,
    }


REMOTE_GATE = {
    "ok": True,
    "ratios": [],
    "failures": [],
    "notes": ["a deployment's processes cannot be measured from here: no ratios, SLAs only"],
}


def row(html: str, first_cell: str) -> str:
    match = re.search(rf"<tr[^>]*><t[hd][^>]*>{re.escape(first_cell)}</t[hd]>.*?</tr>", html)
    assert match, first_cell
    return match.group(0)


def test_failures_name_each_failed_sla_and_gate_check() -> None:
    summary = {
        "slas": [
            {"name": "a", "ok": True},
            {"name": "b", "ok": False, "message": "b 2 > 1"},
            {"name": "c", "ok": False, "value": None, "limit": None},
            {"name": "d", "ok": False, "message": "breached"},
        ],
        "gate": local_gate(gated=True, ok=False),
    }
    assert failures(summary) == [
        "SLA b 2 > 1",
        "SLA c: value None, limit None",
        "SLA d: breached",
        "Gate: regression: cpu_per_request is 6.40x the reference",
    ]


def test_failures_from_gate_ratios_when_the_gate_lists_none() -> None:
    summary = {"gate": {"ok": False, "ratios": [{"name": "rps", "value": 0.5, "ok": False}]}}
    assert failures(summary) == ["Gate rps: 0.5, limit None"]
    assert failures({"gate": {"ok": False}}) == ["Gate: failed"]
    assert failures({"gate": {"ok": True}, "slas": [{"name": "a", "ok": True}]}) == []


def test_an_advisory_gate_fails_nothing() -> None:
    assert failures({"gate": local_gate(gated=False, ok=False)}) == []


def test_verdict_counts_the_slas_and_says_how_the_gate_counted() -> None:
    slas = [{"name": "a", "ok": True}, {"name": "b", "ok": False, "message": "b broke"}]
    page = verdict({"ok": False, "slas": slas, "gate": local_gate(gated=True, ok=False)})
    assert 'class="verdict fail"' in page
    assert ">FAIL<" in page
    assert "1 of 2 SLAs held; release gate enforced, failed." in page
    assert "<li>SLA b broke</li>" in page
    advisory = verdict({"ok": True, "slas": slas[:1], "gate": local_gate(gated=False)})
    assert "1 of 1 SLAs held; release gate not enforced." in advisory
    assert "<li>" not in advisory
    assert "release gate not applied." in verdict({"ok": True, "gate": REMOTE_GATE})


def test_no_verdict_without_ok() -> None:
    page = verdict({})
    assert "NO VERDICT" in page
    assert "not measured" in page
    assert "overview" not in page


def test_sla_rows_show_the_comparison_and_missing_values() -> None:
    slas = [
        {"name": "p95", "op": "<=", "limit": 250.0, "unit": "ms", "value": 11.63, "ok": True},
        {"name": "sos", "op": ">=", "limit": 100.0, "unit": "%", "value": 100.0, "ok": True},
        {
            "name": "service.p95",
            "op": "<=",
            "limit": 500,
            "unit": "ms",
            "value": None,
            "ok": False,
            "message": "the monitor's metrics could not be read",
        },
        {"name": "k6.thresholds", "op": "", "limit": None, "unit": "", "value": None, "ok": False},
        {"name": "odd", "op": "<script>", "limit": 1, "unit": "", "value": 1, "ok": True},
    ]
    html = slas_section({"slas": slas})
    assert "≤ 250 ms" in row(html, "p95")
    assert "≥ 100 %" in row(html, "sos")
    service = row(html, "service.p95")
    assert service.startswith('<tr class="bad">')
    assert "≤ 500 ms" in service
    assert "not measured" in service
    thresholds = row(html, "k6.thresholds")
    assert '<span class="nm">none</span>' in thresholds
    assert "&lt;script&gt; 1" in row(html, "odd")


def test_an_enforced_gate_shows_its_failures_reference_and_ratios() -> None:
    html = gate_section({"gate": local_gate(gated=True, ok=False)})
    assert ">FAIL<" in row(html, "Gate")
    assert "enforced: a regression fails the run" in row(html, "Enforced")
    assert '<ul class="failures"><li>regression: cpu_per_request' in html
    assert 'class="notes"' not in html
    assert "1,612" in row(html, "Requests per second")
    assert "4.57 ms" in row(html, "p95")
    assert "64.9 µs" in row(html, "CPU per request")
    cpu = row(html, "cpu_per_request")
    assert cpu.startswith('<tr class="bad">')
    assert "6.4 \N{MULTIPLICATION SIGN}" in cpu
    assert "50.0 %" in cpu
    read = row(html, "latency.read.p95")
    assert read.count('<span class="nm">none</span>') == 2


def test_an_advisory_gate_shows_its_notes() -> None:
    html = gate_section({"gate": local_gate(gated=False, ok=False)})
    assert ">pass<" in row(html, "Gate")
    assert "not enforced" in row(html, "Enforced")
    assert '<ul class="notes"><li>regression: cpu_per_request' in html
    assert 'class="failures"' not in html


def test_a_deployment_has_no_reference_and_only_notes() -> None:
    html = gate_section({"gate": REMOTE_GATE})
    assert "not applied" in row(html, "Enforced")
    assert "no ratios, SLAs only" in html
    assert "Reference" not in html
    assert "Ratios" not in html
    assert "not measured" not in html


def test_a_missing_gate_is_not_measured() -> None:
    assert "Release gate: not measured." in gate_section({})
    assert "Gate ratios: not measured." in gate_section({"gate": {"reference": REFERENCE}})
