from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tripline.devstack.harness import scaled
from tripline.devstack.process import (
    ManagedProcess,
    ProcessSpec,
    StartFailed,
    group_alive,
    same_process,
    start_token,
)

# A parent whose child ignores SIGTERM and says so in a file once it does.
STUBBORN = """
import subprocess, sys, time
child = (
    "import signal, sys, time, pathlib;"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    "pathlib.Path(sys.argv[1]).write_text('ignoring');"
    "time.sleep(60)"
)
subprocess.Popen([sys.executable, "-c", child, sys.argv[1]])
time.sleep(60)
"""


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + scaled(20)
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_stop_ends_the_whole_group_even_when_a_child_ignores_sigterm(tmp_path: Path) -> None:
    marker = tmp_path / "child-ready"
    process = ManagedProcess(
        ProcessSpec(
            "stubborn",
            [sys.executable, "-c", STUBBORN, str(marker)],
            lambda: True,
            stop_timeout_s=1,
        )
    )
    process.start()
    assert process.pid is not None
    wait_for(marker)
    process.stop()
    assert not group_alive(process.pid)


def test_wait_ready_reports_a_process_that_exits() -> None:
    process = ManagedProcess(
        ProcessSpec("quits", [sys.executable, "-c", "raise SystemExit(3)"], lambda: False)
    )
    process.start()
    with pytest.raises(StartFailed, match="exited with code 3"):
        process.wait_ready(timeout_s=scaled(30))


def test_wait_ready_gives_up_at_the_timeout() -> None:
    process = ManagedProcess(
        ProcessSpec("never", [sys.executable, "-c", "import time; time.sleep(30)"], lambda: False)
    )
    process.start()
    try:
        with pytest.raises(StartFailed, match="not ready"):
            process.wait_ready(timeout_s=0.3, interval_s=0.05)
    finally:
        process.stop()


def test_a_reused_pid_is_not_the_recorded_process() -> None:
    process = ManagedProcess(
        ProcessSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"], lambda: True)
    )
    process.start()
    try:
        assert process.pid is not None
        token = start_token(process.pid)
        assert token is not None
        assert same_process(process.pid, token)
        assert not same_process(process.pid, "another-start")
    finally:
        process.stop()
    assert not same_process(process.pid, token)
