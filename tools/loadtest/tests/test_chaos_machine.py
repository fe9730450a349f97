"""The machine's CPU during a fault, from a /proc of our own making."""

from __future__ import annotations

import os
from pathlib import Path

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


def test_the_rest_is_the_machine_minus_this_run(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, busy_ticks=0, own_ticks=0)
    clock = iter([100.0, 102.0])

    window = machine.CpuWindow(proc, clock=lambda: next(clock))
    window.start()
    fake_proc(tmp_path, busy_ticks=int(3 * TICKS), own_ticks=int(1 * TICKS))
    figures = window.stop()

    assert figures["busy"] == 1.5
    assert figures["this_run"] == 0.5
    assert figures["others"] == 1.0


def test_load_tests_are_the_k6_processes(tmp_path: Path) -> None:
    for pid, name in ((11, "k6"), (12, "python"), (13, "k6")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "comm").write_text(f"{name}\n")
    (tmp_path / "self").mkdir()
    assert sorted(machine.load_tests(tmp_path)) == [11, 13]


async def test_without_another_load_test_nothing_is_waited_for(tmp_path: Path) -> None:
    assert await machine.wait_for_other_load_tests(60, tmp_path) == 0.0
