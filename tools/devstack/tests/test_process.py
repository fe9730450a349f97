from __future__ import annotations

import sys

import pytest

from tripline.devstack.process import ManagedProcess, ProcessSpec, StartFailed, group_alive

# A parent that starts a child which ignores SIGTERM: stopping must still end the whole group.
STUBBORN = (
    "import signal, subprocess, sys, time;"
    "subprocess.Popen([sys.executable, '-c', "
    "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']);"
    "time.sleep(60)"
)


def test_stop_ends_the_whole_group_even_when_a_child_ignores_sigterm() -> None:
    process = ManagedProcess(
        ProcessSpec("stubborn", [sys.executable, "-c", STUBBORN], lambda: True, stop_timeout_s=1)
    )
    process.start()
    assert process.pid is not None
    process.stop()
    assert not group_alive(process.pid)


def test_wait_ready_reports_a_process_that_exits() -> None:
    process = ManagedProcess(
        ProcessSpec("quits", [sys.executable, "-c", "raise SystemExit(3)"], lambda: False)
    )
    process.start()
    with pytest.raises(StartFailed, match="exited with code 3"):
        process.wait_ready(timeout_s=30)


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
