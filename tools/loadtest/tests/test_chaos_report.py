"""The chaos table: cells, Markdown, the text line with its failed checks, and the files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tripline.loadtest.chaos.report import COLUMNS, cells, markdown, text, write

ROW: dict[str, Any] = {
    "fault": "redis-hang",
    "ok": False,
    "critical_during": {"all": {"sent": 200, "ok": 190, "success": 0.95}},
    "critical_p99_ms": 2100.0,
    "sos_p99_after_first_timeout_ms": 35.5,
    "recovery_s": 4.25,
    "lost": {"sos": 0, "payments": 2},
    "lost_total": 2,
    "twice": {"sos": 0},
    "twice_total": 0,
    "checks": [
        {"name": "lost", "ok": False, "message": "2 writes lost"},
        {"name": "critical", "ok": False, "message": "190 of 200"},
        {"name": "recovery", "ok": True, "message": "fine"},
    ],
}


def test_cells_say_each_figure_with_its_unit() -> None:
    assert cells(ROW) == [
        "redis-hang",
        "190/200 (95.0%)",
        "2,100 ms",
        "36 ms",
        "4.2 s",
        "2 (payments 2)",
        "0",
        "FAIL: lost, critical",
    ]


def test_sos_that_failed_after_the_first_timeout_are_counted() -> None:
    row = {**ROW, "sos_p99_after_first_timeout_ms": None, "sos_failed_after_first_timeout": 7}
    assert cells(row)[3] == "7 failed"


def test_unmeasured_figures_show_as_such() -> None:
    bare = {"fault": "x", "ok": True, "recovery_s": None, "checks": []}
    assert cells(bare) == ["x", "-", "-", "-", "not recovered", "-", "-", "PASS"]


def test_markdown_has_a_header_and_a_line_per_row() -> None:
    lines = markdown([ROW, {**ROW, "fault": "s3-hang"}]).splitlines()
    assert lines[0] == "| " + " | ".join(COLUMNS) + " |"
    assert len(lines) == 4
    assert lines[3].startswith("| s3-hang |")


def test_text_lists_the_failed_checks_under_the_line() -> None:
    lines = text(ROW).splitlines()
    assert lines[0].startswith("fault: redis-hang")
    assert lines[1:] == ["    - lost: 2 writes lost", "    - critical: 190 of 200"]


def test_text_gives_the_context_a_failure_is_read_with() -> None:
    row = {
        **ROW,
        "exited": {"worker-documents": 1},
        "upload_states": {"all": {"verified": 9, "queued": 3, "processing": 1}},
        "cpu_during_fault": {"cores": 2, "busy": 1.9, "this_run": 0.8, "others": 1.1},
    }
    assert text(row).splitlines()[3:] == [
        "    (exited by itself: worker-documents (code 1))",
        "    (uploads of any client still queued or processing after the settle window: 4)",
        "    (CPU during the fault: 1.9 of 2 cores busy, 1.1 of them other work than this run)",
    ]


def test_write_keeps_the_latest_row_per_fault_in_the_faults_order(tmp_path: Path) -> None:
    write(tmp_path, {**ROW, "fault": "s3-hang", "recovery_s": 1.0}, ["redis-hang", "s3-hang"])
    write(tmp_path, ROW, ["redis-hang", "s3-hang"])
    rows = write(tmp_path, {**ROW, "recovery_s": 9.0}, ["redis-hang", "s3-hang"])

    assert [(r["fault"], r["recovery_s"]) for r in rows] == [("redis-hang", 9.0), ("s3-hang", 1.0)]
    assert json.loads((tmp_path / "chaos.json").read_text()) == rows
    assert (tmp_path / "chaos.md").read_text().count("\n") == 4
