"""A private local stack for one run: ``tripline-stack`` (what ``make start`` runs) on free
ports and in the run's own folder, so a developer's ``make start`` is neither disturbed nor
measured, and its state file gives the pids whose CPU and memory the run samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tripline.devstack.ports import free_ports
from tripline.devstack.stack import DEFAULT_PORTS

STACK = Path(sys.executable).parent / "tripline-stack"
START_TIMEOUT_S = 330


class StackError(RuntimeError):
    """The stack did not start; the message ends with its start output."""


@dataclass(frozen=True)
class LocalStack:
    """A running private stack: its folder and ports."""

    folder: Path
    ports: Mapping[str, int]

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['GATEWAY_PORT']}"

    @property
    def ws_urls(self) -> list[str]:
        """The tracking replicas, which the Ingress sends ``/ws/`` to in a cluster."""
        return [
            f"ws://127.0.0.1:{self.ports[name]}" for name in ("TRACKING_PORT", "TRACKING_2_PORT")
        ]

    def pids(self) -> dict[str, int]:
        """Each process of the stack by name (the backends too), from the state file."""
        state = json.loads((self.folder / "run" / "stack.json").read_text())
        return {
            name: entry["pid"]
            for name, entry in state.get("processes", {}).items()
            if isinstance(entry, Mapping) and isinstance(entry.get("pid"), int)
        }

    def stop(self) -> None:
        """Stops every process of the stack (idempotent)."""
        subprocess.run(
            [str(STACK), "stop"], env=self._env(), capture_output=True, check=False, timeout=120
        )

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {
            **os.environ,
            **{name: str(port) for name, port in self.ports.items()},
            "TRIPLINE_DATA_DIR": str(self.folder),
            **(extra or {}),
        }


def start(folder: Path, settings: Mapping[str, str]) -> LocalStack:
    """Start the stack on free ports in ``folder`` with ``settings`` added to every process's
    environment; returns once every process is ready, or raises :class:`StackError`."""
    folder.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(
        folder, dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    )
    try:
        done = subprocess.run(
            [str(STACK), "start"],
            env=stack._env(settings),
            capture_output=True,
            text=True,
            check=False,
            timeout=START_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        stack.stop()
        raise StackError(f"the stack did not start within {START_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        stack.stop()
        raise StackError(
            f"the stack did not start (logs in {folder / 'logs'}):\n{done.stdout}{done.stderr}"
        )
    return stack
