"""k6 as a run starts it: a run that does not end by its deadline is killed and said to fail,
and a crossed threshold is told apart from a failure. A small shell script stands in for k6's
exit codes and its hang; the real k6 runs in the release gate's test and in every load run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tripline.loadtest import k6run


async def started(tmp_path: Path, script: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        script,
        stdout=(tmp_path / "k6.log").open("ab"),
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_every_threshold_held_is_true_and_a_crossed_one_false(tmp_path: Path) -> None:
    assert await k6run.finish(await started(tmp_path, "exit 0"), tmp_path / "k6.log") is True
    assert await k6run.finish(await started(tmp_path, "exit 99"), tmp_path / "k6.log") is False


async def test_another_exit_code_fails_with_the_end_of_the_log(tmp_path: Path) -> None:
    process = await started(tmp_path, "echo 'script exception: bad plan'; exit 107")
    with pytest.raises(k6run.K6Error, match=r"(?s)exited with 107.*bad plan"):
        await k6run.finish(process, tmp_path / "k6.log")


async def test_a_run_past_its_deadline_is_killed_and_fails(tmp_path: Path) -> None:
    process = await started(tmp_path, "exec sleep 60")
    with pytest.raises(k6run.K6Error, match="still running after 0 s"):
        await k6run.finish(process, tmp_path / "k6.log", deadline_s=0.2)
    assert process.returncode is not None
