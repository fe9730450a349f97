"""``tripline-stack start`` brings every process to ready; ``stop`` leaves none running.

Runs the real stack on free ports with its own data folder, so it never touches a stack the
developer has running.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tripline.devstack.harness import scaled
from tripline.devstack.ports import free_ports
from tripline.devstack.process import group_alive
from tripline.devstack.stack import DEFAULT_PORTS

pytestmark = pytest.mark.integration


def stack(env: dict[str, str], *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tripline.devstack.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(timeout_s),
        check=False,
    )


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {**os.environ, "TRIPLINE_DATA_DIR": str(tmp_path / "data")}
    env.update(
        {
            name: str(port)
            for name, port in zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True)
        }
    )
    yield env
    stack(env, "stop", timeout_s=90)


def test_start_then_stop_leaves_nothing_running(stack_env: dict[str, str]) -> None:
    started = stack(stack_env, "start", timeout_s=300)
    assert started.returncode == 0, started.stdout + started.stderr

    state_file = Path(stack_env["TRIPLINE_DATA_DIR"]) / "run" / "stack.json"
    state = json.loads(state_file.read_text())
    pids = [entry["pid"] for entry in (state["supervisor"], *state["processes"].values())]
    assert len(state["processes"]) == 13  # 3 backends, 2 sandboxes, 6 services, 2 workers

    # The monitor's look may predate the last process becoming ready: one more look says ok.
    deadline = time.monotonic() + scaled(20)
    while True:
        health = httpx.get(f"http://127.0.0.1:{stack_env['GATEWAY_PORT']}/health", timeout=10)
        assert health.status_code == 200
        if health.json()["status"] == "ok" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert health.json()["status"] == "ok", health.json()

    status = stack(stack_env, "status", timeout_s=30)
    assert status.returncode == 0
    assert "STOPPED" not in status.stdout

    second = stack(stack_env, "start", timeout_s=30)
    assert second.returncode == 1
    assert "already running" in second.stderr

    stopped = stack(stack_env, "stop", timeout_s=90)
    assert stopped.returncode == 0
    assert [pid for pid in pids if group_alive(pid)] == []
    assert not state_file.exists()
    logs = Path(stack_env["TRIPLINE_DATA_DIR"]) / "logs"
    assert "every process is ready" in (logs / "stack.log").read_text()
    assert "Application startup complete" in (logs / "core.log").read_text()


def test_start_refuses_a_taken_port(stack_env: dict[str, str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", int(stack_env["CORE_PORT"])))
        holder.listen()
        refused = stack(stack_env, "start", timeout_s=60)
    assert refused.returncode == 1
    assert "core" in refused.stderr
    assert "taken" in refused.stderr
