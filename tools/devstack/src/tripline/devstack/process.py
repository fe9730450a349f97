"""Starting, watching and stopping one child process of the stack.

Each child runs in its own session (process group) so stopping it takes its children too and a
terminal's Ctrl-C reaches only the supervisor, which stops everything in order. On Linux a
child also gets SIGTERM when the thread that started it dies, so a killed supervisor or test
run does not leave servers behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tripline.devstack.probes import Probe

PR_SET_PDEATHSIG = 1


class StartFailed(RuntimeError):
    """A process exited or never became ready; the message says which."""


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: Sequence[str]
    probe: Probe
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    stop_timeout_s: float = 10.0


def _die_with_parent() -> None:
    # Runs in the child between fork and exec.
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ManagedProcess:
    """One running child: started from a :class:`ProcessSpec`, output to ``output``."""

    def __init__(self, spec: ProcessSpec, output: IO[bytes] | int | None = None) -> None:
        self.spec = spec
        self._output = output
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        env = {**os.environ, **self.spec.env}
        self.popen = subprocess.Popen(
            list(self.spec.argv),
            env=env,
            cwd=self.spec.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._output if self._output is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_ready(
        self, timeout_s: float, interval_s: float = 0.2, cancel: threading.Event | None = None
    ) -> None:
        """Poll the probe until it passes.

        Raises :class:`StartFailed` when the process exits, the timeout passes or ``cancel`` is
        set.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cancel is not None and cancel.is_set():
                raise StartFailed(f"{self.spec.name}: start cancelled")
            if not self.running():
                code = self.popen.returncode if self.popen else None
                raise StartFailed(f"{self.spec.name} exited with code {code} while starting")
            if self.spec.probe():
                return
            time.sleep(interval_s)
        raise StartFailed(f"{self.spec.name} was not ready within {timeout_s:g}s")

    def stop(self) -> None:
        """Stop the process and its group (see :func:`stop_group`). Safe to call twice."""
        if self.popen is None:
            return
        stop_group(self.popen.pid, self.spec.stop_timeout_s)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=1)

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash, for chaos tests)."""
        if self.popen is not None:
            signal_group(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the process hangs with its sockets open."""
        if self.popen is not None:
            signal_group(self.popen.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.popen is not None:
            signal_group(self.popen.pid, signal.SIGCONT)


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to a process group; False when the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True while any process of the group exists (zombies included until reaped)."""
    return _exists(os.killpg, pgid)


def pid_alive(pid: int) -> bool:
    return _exists(os.kill, pid)


def _exists(send: Callable[[int, int], None], target: int) -> bool:
    try:
        send(target, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # It exists, owned by someone else.
        return True
    return True


def start_token(pid: int) -> str | None:
    """What tells this process apart from a later one given the same pid (Linux: its start
    time in clock ticks since boot), or None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def same_process(pid: int, token: str | None) -> bool:
    """True when ``pid`` is still the process recorded with ``token``."""
    if not pid_alive(pid):
        return False
    return token is None or start_token(pid) in (token, None)


def stop_group(pgid: int, timeout_s: float) -> None:
    """Stop a process group: SIGTERM to its leader, then SIGKILL to all that is left.

    Only the leader gets SIGTERM so it can shut down in order (a Celery worker finishes its
    tasks and stops its pool children itself). Returns once the group is gone.
    """
    signal_group(pgid, signal.SIGCONT)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reap(pgid)
        if not group_alive(pgid):
            return
        time.sleep(0.1)
    signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while group_alive(pgid) and time.monotonic() < deadline:
        reap(pgid)
        time.sleep(0.05)


def reap(pid: int) -> None:
    """Collect an exited child so it does not linger as a zombie (no-op for non-children)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
