from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from tripline.common.settings import LOCAL_JWT_SECRET
from tripline.devstack import cli
from tripline.devstack.process import ManagedProcess, ProcessSpec, start_token


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TRIPLINE_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def bystander() -> Iterator[ManagedProcess]:
    """An unrelated process whose pid a stale state file happens to name."""
    process = ManagedProcess(
        ProcessSpec("bystander", [sys.executable, "-c", "import time; time.sleep(60)"], bool)
    )
    process.start()
    yield process
    process.stop()


def write_state(data_dir: Path, state: dict[str, object]) -> None:
    (data_dir / "run").mkdir(parents=True)
    (data_dir / "run" / "stack.json").write_text(json.dumps(state))


def test_a_stale_state_file_is_neither_running_nor_stopped_by_pid_alone(
    data_dir: Path, bystander: ManagedProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bystander.pid is not None
    stale = {"pid": bystander.pid, "started": "from-before-a-reboot"}
    write_state(data_dir, {"status": "ready", "supervisor": stale, "processes": {"core": stale}})

    assert cli.read_state() is None
    assert cli.main(["stop"]) == 0
    assert bystander.running()
    assert not (data_dir / "run" / "stack.json").exists()
    assert "stopped" in capsys.readouterr().out


def test_stop_cleans_up_after_a_killed_supervisor(
    data_dir: Path, bystander: ManagedProcess
) -> None:
    assert bystander.pid is not None
    dead_supervisor = {"pid": 2**22 + 1, "started": "gone"}
    child = {"pid": bystander.pid, "started": start_token(bystander.pid)}
    write_state(data_dir, {"supervisor": dead_supervisor, "processes": {"core": child}})

    assert cli.main(["stop"]) == 0
    assert not bystander.running()


def test_stop_without_a_stack_says_so(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["stop"]) == 0
    assert "not running" in capsys.readouterr().out


def test_token_is_a_verifiable_jwt(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["token", "--role", "driver", "--sub", "d1"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), LOCAL_JWT_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["role"]) == ("d1", "driver")
