"""Running the local stack in the foreground: ordered start, prefixed logs, ordered stop.

Each child writes to its own log file, so a stalled supervisor (Ctrl-Z, a full terminal) never
blocks a service; the supervisor follows those files and echoes them, prefixed, to the terminal
and to one combined log. It records its own pid and every child's in a state file, so ``stop``
from another terminal can end everything even if the supervisor itself was killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import IO, Any

from tripline.devstack.process import ManagedProcess, ProcessSpec, StartFailed, start_token

READY_TIMEOUT_S = 120.0
FOLLOW_INTERVAL_S = 0.1


class LogMux:
    """Writes lines with a name prefix to stdout and to the stack's combined log file."""

    def __init__(self, log_file: IO[str], *, echo: bool, width: int) -> None:
        self._log_file = log_file
        self._echo = echo
        self._width = width
        self._lock = threading.Lock()

    def line(self, name: str, text: str) -> None:
        out = f"{name:<{self._width}} | {text.rstrip()}\n"
        with self._lock:
            if self._echo:
                sys.stdout.write(out)
                sys.stdout.flush()
            self._log_file.write(out)
            self._log_file.flush()

    def follow(self, name: str, path: Path, offset: int, stop: threading.Event) -> None:
        """Echo the lines appended to ``path`` after ``offset`` until ``stop`` is set."""
        with path.open("rb") as source:
            source.seek(offset)
            pending = b""
            while True:
                chunk = source.readline()
                if chunk:
                    pending += chunk
                    if pending.endswith(b"\n"):
                        self.line(name, pending.decode(errors="replace"))
                        pending = b""
                    continue
                if stop.wait(FOLLOW_INTERVAL_S):
                    if pending:
                        self.line(name, pending.decode(errors="replace"))
                    return


class Supervisor:
    """Starts process groups in order, watches them, and stops them in reverse order."""

    def __init__(
        self,
        groups: Sequence[Sequence[ProcessSpec]],
        state_path: Path,
        log_dir: Path,
        *,
        echo: bool,
    ) -> None:
        self.groups = groups
        self.state_path = state_path
        self.log_dir = log_dir
        self.echo = echo
        self.processes: list[ManagedProcess] = []
        self._stopping = threading.Event()
        self._followers_done = threading.Event()
        self._followers: list[threading.Thread] = []

    def run(self, extra_state: dict[str, Any]) -> int:
        """Start every group, wait until asked to stop, then stop in reverse order.

        Returns the exit code: 0 after a requested stop, 1 when start-up failed.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        width = max(len(spec.name) for group in self.groups for spec in group)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        with (self.log_dir / "stack.log").open("a", encoding="utf-8") as log_file:
            mux = LogMux(log_file, echo=self.echo, width=max(width, 10))
            try:
                self._write_state("starting", extra_state)
                for group in self.groups:
                    self._start_group(group, mux)
                self._write_state("ready", extra_state)
                mux.line("stack", "every process is ready")
                self._watch(mux)
                return 0
            except StartFailed as exc:
                if self._stopping.is_set():
                    return 0
                mux.line("stack", f"start failed: {exc}")
                return 1
            finally:
                self._stop_all(mux)
                with contextlib.suppress(FileNotFoundError):
                    self.state_path.unlink()

    def _on_signal(self, _sig: int, _frame: FrameType | None) -> None:
        self._stopping.set()

    def _start_group(self, group: Sequence[ProcessSpec], mux: LogMux) -> None:
        started = []
        for spec in group:
            path = self.log_dir / f"{spec.name}.log"
            with path.open("ab") as output:
                offset = output.tell()
                process = ManagedProcess(spec, output=output)
                process.start()
            self.processes.append(process)
            started.append(process)
            follower = threading.Thread(
                target=mux.follow,
                args=(spec.name, path, offset, self._followers_done),
                daemon=True,
            )
            follower.start()
            self._followers.append(follower)
        self._write_state("starting", {})
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(started)) as pool:
            waits = [
                pool.submit(p.wait_ready, READY_TIMEOUT_S, 0.2, self._stopping) for p in started
            ]
            for future in waits:
                future.result()
        for process in started:
            mux.line(
                "stack",
                f"{process.spec.name} is ready (pid {process.pid}, "
                f"group ready after {time.monotonic() - began:.1f}s)",
            )

    def _watch(self, mux: LogMux) -> None:
        reported: set[str] = set()
        while not self._stopping.wait(0.5):
            for process in self.processes:
                if not process.running() and process.spec.name not in reported:
                    reported.add(process.spec.name)
                    code = process.popen.returncode if process.popen else None
                    mux.line("stack", f"{process.spec.name} exited with code {code}")

    def _stop_all(self, mux: LogMux) -> None:
        for process in reversed(self.processes):
            if process.running():
                mux.line("stack", f"stopping {process.spec.name}")
            process.stop()
        self._followers_done.set()
        for follower in self._followers:
            follower.join(timeout=2)
        mux.line("stack", "stopped")

    def _write_state(self, status: str, extra: dict[str, Any]) -> None:
        state: dict[str, Any] = {}
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            state = json.loads(self.state_path.read_text())
        state.update(extra)
        state.update(
            status=status,
            supervisor={"pid": os.getpid(), "started": start_token(os.getpid())},
            updated_at=time.time(),
            processes={
                p.spec.name: {"pid": p.pid, "started": start_token(p.pid) if p.pid else None}
                for p in self.processes
            },
        )
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_path)
