"""The machine's CPU during a fault, from a /proc of our own making."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tripline.loadtest.chaos import machine
from tripline.loadtest.procfs import TICKS


def fake_proc(tmp_path: Path, busy_ticks: int, own_ticks: int) -> Path:
    (tmp_path / "stat").write_text(f"cpu  {busy_ticks} 0 0 999999 7 0 0 0 0 0\ncpu0 1 2 3\n")
    own = tmp_path / str(os.getpid())
    own.mkdir(exist_ok=True)
    fields = ["S", "1"] + ["0"] * 9 + [str(own_ticks), "0"] + ["0"] * 8 + ["0"]
    (own / "stat").write_text(f"{os.getpid()} (py thon) " + " ".join(fields) + "\n")
    return tmp_path


def test_busy_cpu_counts_every_field_but_idle_and_iowait(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("cpu  100 10 20 5000 300 1 2 3 0 0\n")
    assert machine.busy_cpu_s(tmp_path) == (100 + 10 + 20 + 1 + 2 + 3) / TICKS


def test_the_rest_is_the_machine_minus_this_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = fake_proc(tmp_path, busy_ticks=0, own_ticks=0)
    clock = iter([100.0, 102.0])
    monkeypatch.setattr(machine.time, "monotonic", lambda: next(clock))

    window = machine.CpuWindow(proc)
    window.start()
    fake_proc(tmp_path, busy_ticks=int(3 * TICKS), own_ticks=int(1 * TICKS))
    figures = window.stop()

    assert figures["busy"] == 1.5
    assert figures["this_run"] == 0.5
    assert figures["others"] == 1.0
