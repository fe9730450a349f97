"""The chaos table: one row per fault, printed as each fault finishes and kept under
``.loadtest/chaos/`` (git-ignored) as ``rows/<fault>.json`` (the latest row of each fault),
``chaos.json`` (all of them, in the faults' order) and ``chaos.md`` (the table the README's
is made from). Pure but for the files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

COLUMNS = (
    "fault",
    "critical ok during fault",
    "critical p99",
    "SOS p99 after 1st timeout",
    "recovery",
    "lost",
    "twice",
    "verdict",
)


def _ms(value: object) -> str:
    return f"{value:,.0f} ms" if isinstance(value, int | float) else "-"


def _sos(row: Mapping[str, Any]) -> str:
    failed = row.get("sos_failed_after_first_timeout")
    p99 = row.get("sos_p99_after_first_timeout_ms")
    if p99 is None and failed:
        return f"{failed} failed"
    return _ms(p99)


def _counts(total: object, per: object) -> str:
    if not isinstance(per, Mapping) or not total:
        return str(total if total is not None else "-")
    return f"{total} ({', '.join(f'{k} {v}' for k, v in per.items() if v)})"


def cells(row: Mapping[str, Any]) -> list[str]:
    """A row's table cells, in :data:`COLUMNS` order."""
    during = row.get("critical_during", {}).get("all", {})
    success = during.get("success")
    critical = (
        f"{during.get('ok')}/{during.get('sent')} ({success:.1%})"
        if isinstance(success, int | float)
        else "-"
    )
    recovery = row.get("recovery_s")
    failed = [c["name"] for c in row.get("checks", []) if not c["ok"]]
    return [
        str(row.get("fault")),
        critical,
        _ms(row.get("critical_p99_ms")),
        _sos(row),
        f"{recovery:.1f} s" if isinstance(recovery, int | float) else "not recovered",
        _counts(row.get("lost_total"), row.get("lost")),
        _counts(row.get("twice_total"), row.get("twice")),
        "PASS" if row.get("ok") else "FAIL: " + ", ".join(failed),
    ]


def markdown(rows: Iterable[Mapping[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def context(row: Mapping[str, Any]) -> list[str]:
    """What a reader of a failed row wants next: processes that ended by themselves, uploads
    of any client left unfinished, and how busy the machine was with other work."""
    said = []
    exited = row.get("exited") or {}
    if exited:
        said.append("exited by itself: " + ", ".join(f"{n} (code {c})" for n, c in exited.items()))
    every = (row.get("upload_states") or {}).get("all") or {}
    stuck = sum(every.get(status, 0) for status in ("queued", "processing"))
    if stuck:
        said.append(
            f"uploads of any client still queued or processing after the settle window: {stuck}"
        )
    cpu = row.get("cpu_during_fault") or {}
    if isinstance(cpu.get("others"), int | float):
        said.append(
            f"CPU during the fault: {cpu['busy']} of {cpu['cores']} cores busy, "
            f"{cpu['others']} of them other work than this run"
        )
    if cpu.get("other_load_tests"):
        said.append("another load test (k6) ran on this machine during the fault")
    return said


def text(row: Mapping[str, Any]) -> str:
    """One row as a line of text with its failed checks' sentences and its context below."""
    line = "  ".join(f"{name}: {cell}" for name, cell in zip(COLUMNS, cells(row), strict=True))
    failed = [f"    - {c['name']}: {c['message']}" for c in row.get("checks", []) if not c["ok"]]
    return "\n".join([line, *failed, *(f"    ({said})" for said in context(row))])


def write(folder: Path, row: Mapping[str, Any], order: Sequence[str]) -> list[dict[str, Any]]:
    """Keep ``row`` as its fault's latest and rewrite ``chaos.json`` and ``chaos.md`` from
    every fault's latest row (faults in ``order``, others after); returns those rows."""
    rows_dir = folder / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    (rows_dir / f"{row['fault']}.json").write_text(json.dumps(row, indent=1))
    rows = [json.loads(path.read_text()) for path in sorted(rows_dir.glob("*.json"))]
    rank = {name: index for index, name in enumerate(order)}
    rows.sort(key=lambda r: (rank.get(r.get("fault", ""), len(rank)), r.get("fault", "")))
    (folder / "chaos.json").write_text(json.dumps(rows, indent=1))
    (folder / "chaos.md").write_text(markdown(rows))
    return rows
