"""CPU and memory of process trees from the real ``/proc``: this test process and a child it
starts under a name with spaces and parentheses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tripline.loadtest.procfs import (
    PAGE,
    TICKS,
    Usage,
    parse_stat,
    snapshot,
    tree_usage,
    usage_by_name,
)

# A command name that fools a parser splitting at the first ")": it reads as state S, ppid 1.
ODD_NAME = "load) S 1 (x"
CHILD_CPU_S = 0.2
# /proc counts CPU in clock ticks, rounding down.
TICK_S = 1 / TICKS
CHILD = f"""
import sys, time
while time.process_time() < {CHILD_CPU_S}:
    pass
print("ready", flush=True)
sys.stdin.readline()
"""


def start_child(folder: Path) -> subprocess.Popen[str]:
    """A Python process run under ``ODD_NAME`` that burns CPU_S of CPU, says ready, and waits
    for its stdin to close."""
    executable = folder / ODD_NAME
    executable.symlink_to(os.path.realpath(sys.executable))
    child = subprocess.Popen(
        [str(executable), "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n"
    return child


def end(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.close()
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    if child.stdout is not None:
        child.stdout.close()


@pytest.fixture
def child(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    started = start_child(tmp_path)
    try:
        yield started
    finally:
        end(started)


def stat_line(name: str, ppid: int, utime: int, stime: int, rss_pages: int) -> str:
    """A ``/proc/<pid>/stat`` line as the kernel writes it (52 fields)."""
    after = ["S", str(ppid), "4242", "4242", "0", "-1", "4194304", "1530", "0", "2", "0"]
    after += [str(utime), str(stime), "7", "3", "20", "0", "3", "0", "123456", "98765432"]
    after += [str(rss_pages), "18446744073709551615"] + ["0"] * 29
    return f"4243 ({name}) " + " ".join(after) + "\n"


def test_parse_stat_reads_ppid_cpu_and_rss_after_the_last_parenthesis() -> None:
    text = stat_line(ODD_NAME, ppid=77, utime=150, stime=50, rss_pages=300)
    ppid, usage = parse_stat(text)
    assert ppid == 77
    assert usage == Usage(200 / TICKS, 300 * PAGE)


@pytest.mark.parametrize("name", ["python3", "tripline worker", "(sd-pam)", "a) b (c) d"])
def test_parse_stat_takes_any_command_name(name: str) -> None:
    assert parse_stat(stat_line(name, 9, 1, 2, 3)) == (9, Usage(3 / TICKS, 3 * PAGE))


def test_parse_stat_of_this_process() -> None:
    before = time.process_time()
    ppid, usage = parse_stat(Path(f"/proc/{os.getpid()}/stat").read_text())
    after = time.process_time()
    assert ppid == os.getppid()
    assert before - 2 * TICK_S <= usage.cpu_s <= after + TICK_S
    assert usage.rss_bytes > 10_000_000  # an interpreter with pytest loaded


def test_parse_stat_of_a_child_named_with_spaces_and_parentheses(
    child: subprocess.Popen[str],
) -> None:
    assert Path(f"/proc/{child.pid}/comm").read_text().strip() == ODD_NAME
    ppid, usage = parse_stat(Path(f"/proc/{child.pid}/stat").read_text())
    assert ppid == os.getpid()
    assert usage.cpu_s >= CHILD_CPU_S - 2 * TICK_S
    assert usage.rss_bytes > 0


def test_tree_usage_sums_a_process_and_all_its_descendants() -> None:
    table = {
        1: (0, Usage(1.0, 10)),
        2: (1, Usage(2.0, 20)),
        3: (2, Usage(4.0, 40)),
        4: (1, Usage(8.0, 80)),
        5: (0, Usage(16.0, 160)),
        6: (5, Usage(32.0, 320)),
    }
    assert tree_usage(table, 1) == Usage(15.0, 150)
    assert tree_usage(table, 2) == Usage(6.0, 60)
    assert tree_usage(table, 3) == Usage(4.0, 40)
    assert tree_usage(table, 5) == Usage(48.0, 480)


def test_tree_usage_of_a_process_not_in_the_table_is_none() -> None:
    assert tree_usage({1: (0, Usage(1.0, 10))}, 2) is None
    assert tree_usage({}, 1) is None


def descendants(table: dict[int, tuple[int, Usage]], root: int) -> set[int]:
    """The processes whose parents lead up to ``root`` (``root`` included)."""
    found = set()
    for pid in table:
        at, seen = pid, set()
        while at in table and at not in seen:
            if at == root:
                found.add(pid)
                break
            seen.add(at)
            at = table[at][0]
    return found


def test_snapshot_holds_this_process_and_its_child_and_the_tree_sums_them(
    child: subprocess.Popen[str],
) -> None:
    table = snapshot()
    me = os.getpid()
    assert table[me][0] == os.getppid()
    assert table[child.pid][0] == me
    below = descendants(table, me)
    assert {me, child.pid} <= below
    total = tree_usage(table, me)
    assert total is not None
    assert total.cpu_s == pytest.approx(sum(table[pid][1].cpu_s for pid in below))
    assert total.rss_bytes == sum(table[pid][1].rss_bytes for pid in below)
    assert total.rss_bytes > table[me][1].rss_bytes


def test_usage_by_name_measures_each_tree_that_runs(child: subprocess.Popen[str]) -> None:
    used = usage_by_name({"tests": os.getpid(), "child": child.pid})
    assert set(used) == {"tests", "child"}
    assert used["child"]["cpu_s"] >= CHILD_CPU_S - 2 * TICK_S
    assert 0 < used["child"]["rss_bytes"] < used["tests"]["rss_bytes"]
    # This process's tree holds the child.
    assert used["tests"]["cpu_s"] >= used["child"]["cpu_s"]
    assert used["tests"]["cpu_s"] == round(used["tests"]["cpu_s"], 3)


def test_usage_by_name_leaves_out_a_process_that_ended(tmp_path: Path) -> None:
    started = start_child(tmp_path)
    assert set(usage_by_name({"child": started.pid})) == {"child"}
    end(started)
    assert usage_by_name({"child": started.pid}) == {}


def test_snapshot_skips_entries_that_are_no_readable_process(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for entry, stat in (("12", stat_line("core", 1, 10, 5, 100)), ("13", "garbage")):
        (proc / entry).mkdir(parents=True)
        (proc / entry / "stat").write_text(stat)
    (proc / "14").mkdir()  # it ended between the listing and the read
    (proc / "self").mkdir()
    (proc / "self" / "stat").write_text(stat_line("me", 1, 1, 1, 1))
    assert snapshot(proc) == {12: (1, Usage(15 / TICKS, 100 * PAGE))}
    assert usage_by_name({"core": 12, "gone": 14}, proc) == {
        "core": {"cpu_s": round(15 / TICKS, 3), "rss_bytes": 100 * PAGE}
    }


def test_usages_add_up() -> None:
    assert Usage(1.5, 100) + Usage(0.25, 28) == Usage(1.75, 128)
