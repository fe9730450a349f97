"""The gate's committed baseline: written per profile without touching the others, read back."""

from __future__ import annotations

import json
from pathlib import Path

from tripline.loadtest.baseline import read_baseline, write_baseline


def test_a_written_baseline_reads_back_rounded(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    write_baseline(
        path, "smoke", {"cpu_per_request": 141.56612, "latency.read.p95": 9.2}, "r1", "abc"
    )
    assert read_baseline(path, "smoke") == {"cpu_per_request": 141.566, "latency.read.p95": 9.2}
    entry = json.loads(path.read_text())["smoke"]
    assert entry["recorded_from"] == "r1"
    assert entry["commit"] == "abc"


def test_writing_one_profile_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    write_baseline(path, "smoke", {"cpu_per_request": 1.0}, "r1", "abc")
    write_baseline(path, "ci", {"cpu_per_request": 2.0}, "r2", "def")
    assert read_baseline(path, "smoke") == {"cpu_per_request": 1.0}
    assert read_baseline(path, "ci") == {"cpu_per_request": 2.0}


def test_no_file_or_no_profile_is_no_baseline(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    assert read_baseline(path, "smoke") is None
    write_baseline(path, "ci", {"cpu_per_request": 2.0}, "r2", "def")
    assert read_baseline(path, "smoke") is None


def test_the_committed_baseline_has_the_smoke_profile_the_gate_runs() -> None:
    committed = Path(__file__).resolve().parents[3] / "tests" / "load" / "baseline.json"
    ratios = read_baseline(committed, "smoke")
    assert ratios is not None
    assert set(ratios) == {"cpu_per_request", "latency.read.p95"}
