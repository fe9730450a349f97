"""How busy the machine was while a fault lasted, and how much of that was this run (the test
process, its stack and k6) rather than something else on the machine: the chaos figures of a
2-core machine shared with other work are only readable beside it. And whether another load
test runs (a k6 process), which a run waits out first: two load tests on two cores measure
neither. Linux only (``/proc``)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tripline.loadtest.procfs import PROC, TICKS, snapshot, tree_usage

# /proc/stat's cpu line: user nice system idle iowait irq softirq steal ...
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


def busy_cpu_s(proc: Path = PROC) -> float:
    """CPU seconds every core has spent busy since boot."""
    fields = (proc / "stat").read_text().splitlines()[0].split()[1:]
    return sum(int(fields[i]) for i in BUSY_FIELDS if i < len(fields)) / TICKS


def own_cpu_s(proc: Path = PROC) -> float:
    """CPU seconds this process and every live descendant have used."""
    usage = tree_usage(snapshot(proc), os.getpid())
    return usage.cpu_s if usage is not None else 0.0


@dataclass
class CpuWindow:
    """CPU use between :meth:`start` and :meth:`stop`, in cores."""

    proc: Path = PROC
    clock: Callable[[], float] = time.monotonic
    _began: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))

    def start(self) -> None:
        self._began = (self.clock(), busy_cpu_s(self.proc), own_cpu_s(self.proc))

    def stop(self) -> dict[str, float | int | None]:
        """Cores the machine kept busy, cores this run used, cores the rest used (what the
        machine did minus this run: a process of this run that died meanwhile, a killed one,
        counts as the rest's)."""
        now, busy, own = self.clock(), busy_cpu_s(self.proc), own_cpu_s(self.proc)
        began, busy_0, own_0 = self._began
        elapsed = now - began
        if elapsed <= 0:
            return {"cores": os.cpu_count(), "busy": None, "this_run": None, "others": None}
        machine, mine = (busy - busy_0) / elapsed, max(0.0, own - own_0) / elapsed
        return {
            "cores": os.cpu_count(),
            "busy": round(machine, 2),
            "this_run": round(mine, 2),
            "others": round(max(0.0, machine - mine), 2),
        }


def load_tests(proc: Path = PROC) -> list[int]:
    """Pids of the k6 processes running now (a load test, whoever started it)."""
    found = []
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "k6":
                    found.append(int(entry.name))
            except OSError:
                continue  # it ended while we looked
    return found


async def wait_for_other_load_tests(bound_s: float, proc: Path = PROC) -> float:
    """Wait until no k6 runs (at most ``bound_s``, polling every 5 s); returns how long it
    waited. Call it before this run starts its own k6."""
    started = time.monotonic()
    # Polling: another process's end has no event to wait on.
    while load_tests(proc) and time.monotonic() - started < bound_s:  # noqa: ASYNC110
        await asyncio.sleep(5)
    return round(time.monotonic() - started, 1)
