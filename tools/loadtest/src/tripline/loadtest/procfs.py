"""CPU time and resident memory of local processes, with their children (a Celery worker's
pool, k6's own), from ``/proc``. Linux only; a process that is gone reads as None."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    """CPU seconds used since the process started (user and system) and resident bytes."""

    cpu_s: float
    rss_bytes: int

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.cpu_s + other.cpu_s, self.rss_bytes + other.rss_bytes)


def parse_stat(text: str) -> tuple[int, Usage]:
    """The parent pid and usage in a ``/proc/<pid>/stat`` line (rss in pages times PAGE). The
    command name may hold spaces and parentheses, so fields are counted after its last ``)``."""
    fields = text[text.rindex(")") + 2 :].split()
    # After the name: state(0) ppid(1) ... utime(11) stime(12) ... rss(21)
    return int(fields[1]), Usage(
        (int(fields[11]) + int(fields[12])) / TICKS, int(fields[21]) * PAGE
    )


def snapshot(proc: Path = PROC) -> dict[int, tuple[int, Usage]]:
    """``{pid: (ppid, usage)}`` of every process now."""
    table: dict[int, tuple[int, Usage]] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                table[int(entry.name)] = parse_stat((entry / "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue  # it ended while we looked
    return table


def tree_usage(table: Mapping[int, tuple[int, Usage]], root: int) -> Usage | None:
    """``root``'s usage with all its descendants', None when ``root`` is not in ``table``."""
    if root not in table:
        return None
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in table.items():
        children[ppid].append(pid)
    total, todo = Usage(0.0, 0), [root]
    while todo:
        pid = todo.pop()
        total += table[pid][1]
        todo.extend(children.get(pid, ()))
    return total


def usage_by_name(pids: Mapping[str, int], proc: Path = PROC) -> dict[str, dict[str, float | int]]:
    """``{name: {"cpu_s", "rss_bytes"}}`` for each named process tree that still runs."""
    table = snapshot(proc)
    out: dict[str, dict[str, float | int]] = {}
    for name, pid in pids.items():
        usage = tree_usage(table, pid)
        if usage is not None:
            out[name] = {"cpu_s": round(usage.cpu_s, 3), "rss_bytes": usage.rss_bytes}
    return out
