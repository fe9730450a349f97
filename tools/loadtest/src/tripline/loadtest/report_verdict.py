"""What a run was judged on, for the report: the verdict, the SLAs and the release gate.

Reads ``summary["ok"]``, ``summary["slas"]`` (rows of name, requirement, op, limit, unit,
value, ok, message; ``limit`` and ``value`` may be None) and ``summary["gate"]`` (ok, gated,
reference, ratios, failures, notes; a deployment has no reference and only notes). Pure; every
function returns escaped markup and never raises on odd data.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from tripline.loadtest.report_html import (
    NOT_MEASURED,
    bullets,
    missing,
    muted,
    number,
    pairs,
    pass_fail,
    percent,
    plain,
    section,
    table,
)
from tripline.loadtest.report_values import mapping, records

# How an SLA row's ``op`` reads in front of its limit.
OPERATORS = {"<=": "≤", ">=": "≥", "<": "<", ">": ">", "==": "="}
TIMES = "\N{MULTIPLICATION SIGN}"  # a ratio's unit


def _strings(value: Any) -> list[str]:
    """The non-empty entries of ``value`` as text, if it is a list; else none."""
    return (
        [str(item) for item in value if item not in (None, "")] if isinstance(value, list) else []
    )


def failures(summary: Mapping[str, Any]) -> list[str]:
    """One line per failed SLA and per failed gate check, naming it.

    An SLA's line is its message, led by its name unless the message starts with it. A gate
    that failed without listing why gets a line per failed ratio, or "Gate: failed".
    """
    lines = []
    for sla in records(summary.get("slas")):
        if sla.get("ok") is False:
            name, message = str(sla.get("name") or "(unnamed)"), sla.get("message")
            if isinstance(message, str) and message.startswith(name):
                lines.append(f"SLA {message}")
            else:
                detail = message or f"value {sla.get('value')}, limit {sla.get('limit')}"
                lines.append(f"SLA {name}: {detail}")
    gate = mapping(summary.get("gate"))
    gate_lines = [f"Gate: {failure}" for failure in _strings(gate.get("failures"))]
    if gate.get("ok") is False and not gate_lines:
        gate_lines = [
            f"Gate {r.get('name')}: {r.get('value')}, limit {r.get('limit')}"
            for r in records(gate.get("ratios"))
            if r.get("ok") is False
        ] or ["Gate: failed"]
    return lines + gate_lines


def _enforcement(gate: Mapping[str, Any]) -> str:
    """How the gate counted, in a few words: enforced, not enforced, or not applied."""
    gated = gate.get("gated")
    if gated is True:
        return "enforced: a regression fails the run"
    if gated is False:
        return "not enforced: the ratios are reported, not judged (--gate judges them)"
    return "not applied"


def _overview(summary: Mapping[str, Any]) -> str:
    """One line under the verdict: how many SLAs held and how the release gate counted."""
    slas = records(summary.get("slas"))
    parts = []
    if slas:
        held = sum(sla.get("ok") is True for sla in slas)
        parts.append(f"{held} of {len(slas)} SLAs held")
    gate = summary.get("gate")
    if isinstance(gate, Mapping):
        state = _enforcement(gate).partition(":")[0]
        if gate.get("gated") is True:
            state += ", passed" if gate.get("ok") is True else ", failed"
        parts.append(f"release gate {state}")
    return f'<p class="overview">{escape("; ".join(parts))}.</p>' if parts else ""


def verdict(summary: Mapping[str, Any]) -> str:
    """The verdict block: PASS, FAIL or NO VERDICT, a line of counts, and every failure."""
    ok = summary.get("ok")
    word, css = ("PASS", "pass") if ok is True else ("FAIL", "fail") if ok is False else ("", "")
    detail = _overview(summary) + bullets(failures(summary))
    if not word:
        word, detail = "NO VERDICT", f'<p class="nm">The verdict: {NOT_MEASURED}.</p>{detail}'
    return f'<div class="verdict {css}"><div class="word">{word}</div>{detail}</div>'


def _limit(sla: Mapping[str, Any], unit: str) -> str:
    """An SLA's limit with its comparison, e.g. "≤ 250 ms"; "none" when it has no limit."""
    limit = sla.get("limit")
    if limit is None:
        return muted("none")
    op = sla.get("op")
    sign = escape(OPERATORS.get(op, op)) if isinstance(op, str) else ""
    return f"{sign} {number(limit, unit)}" if sign else number(limit, unit)


def slas_section(summary: Mapping[str, Any]) -> str:
    """The SLAs: one row each with its requirement, limit, measured value and verdict."""
    slas = records(summary.get("slas"))
    if not slas:
        return section("SLAs", missing("SLAs"))
    rows = []
    for sla in slas:
        unit = str(sla.get("unit") or "")
        rows.append(
            [
                plain(sla.get("name")),
                plain(sla.get("requirement")),
                _limit(sla, unit),
                number(sla.get("value"), unit),
                pass_fail(sla.get("ok")),
                plain(sla.get("message")),
            ]
        )
    bad = [sla.get("ok") is False for sla in slas]
    headers = ["SLA", "Requirement", "Limit", "Value", "OK", "Detail"]
    return section("SLAs", table(headers, rows, numeric={2, 3}, bad=bad))


def _reference(reference: Mapping[str, Any]) -> str:
    """The reference service as measured in the run; "" when there was none."""
    if not reference:
        return ""
    return "<h3>Reference</h3>" + pairs(
        [
            ("Service", plain(reference.get("name"))),
            ("Requests", number(reference.get("requests"))),
            ("Requests per second", number(reference.get("rps"))),
            ("p50", number(reference.get("p50_ms"), "ms")),
            ("p95", number(reference.get("p95_ms"), "ms")),
            ("CPU per request", number(reference.get("cpu_us_per_request"), "µs")),
        ]
    )


def _ratios(gate: Mapping[str, Any]) -> str:
    """The ratios to the reference against their baselines; "" when the gate has none."""
    ratios = records(gate.get("ratios"))
    if not ratios:
        return "" if not mapping(gate.get("reference")) else missing("Gate ratios")
    rows = [
        [
            plain(r.get("name")),
            number(r.get("value"), TIMES),
            number(r.get("baseline"), TIMES, absent="none"),
            percent(r.get("tolerance")),
            number(r.get("limit"), TIMES, absent="none"),
            pass_fail(r.get("ok")),
        ]
        for r in ratios
    ]
    headers = ["Ratio to the reference", "Value", "Baseline", "Tolerance", "Limit", "OK"]
    bad = [r.get("ok") is False for r in ratios]
    return "<h3>Ratios</h3>" + table(headers, rows, numeric=range(1, 5), bad=bad)


def gate_section(summary: Mapping[str, Any]) -> str:
    """The release gate: its result, whether it was enforced, its notes and failures, the
    reference it measured against and each ratio with its baseline."""
    gate = summary.get("gate")
    if not isinstance(gate, Mapping):
        return section("Release gate", missing("Release gate"))
    state = pairs([("Gate", pass_fail(gate.get("ok"))), ("Enforced", escape(_enforcement(gate)))])
    notes = bullets(_strings(gate.get("notes")), "notes")
    failed = bullets(_strings(gate.get("failures")), "failures")
    reference = _reference(mapping(gate.get("reference")))
    return section("Release gate", state, failed, notes, reference, _ratios(gate))
