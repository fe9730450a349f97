"""``tripline-stack``: bring the local stack up, start it in the background, stop it, inspect it.

The Makefile's ``up``, ``start``, ``stop``, ``status``, ``logs`` and ``token`` call this.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tripline.common.auth import Role, mint_token
from tripline.common.settings import LOCAL_JWT_SECRET
from tripline.devstack.backends import MissingBinary, redis_binary
from tripline.devstack.ports import port_in_use
from tripline.devstack.process import same_process, stop_group
from tripline.devstack.stack import StackPorts, stack_groups, url
from tripline.devstack.supervisor import Supervisor

START_TIMEOUT_S = 300.0


def data_dir() -> Path:
    return Path(os.environ.get("TRIPLINE_DATA_DIR", Path.cwd() / ".data")).resolve()


def state_path() -> Path:
    return data_dir() / "run" / "stack.json"


def log_dir() -> Path:
    return data_dir() / "logs"


def log_path() -> Path:
    return log_dir() / "stack.log"


def read_state() -> dict[str, Any] | None:
    """The running stack's state, or None when no supervisor is alive."""
    try:
        state: dict[str, Any] = json.loads(state_path().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not recorded_alive(state.get("supervisor")):
        return None
    return state


def recorded_pid(entry: object) -> tuple[int, str | None] | None:
    """The pid and start token of a state-file entry, or None when it is malformed."""
    if not isinstance(entry, dict) or not isinstance(entry.get("pid"), int):
        return None
    token = entry.get("started")
    return entry["pid"], token if isinstance(token, str) else None


def recorded_alive(entry: object) -> bool:
    """True when the recorded process still runs (not merely another one with its pid)."""
    recorded = recorded_pid(entry)
    return recorded is not None and same_process(*recorded)


def urls_text(ports: StackPorts) -> str:
    return "\n".join(
        [
            f"  gateway    {url(ports.gateway)}   (curl {url(ports.gateway)}/health)",
            f"  core       {url(ports.core)}",
            f"  upload     {url(ports.upload)}",
            f"  tracking   {url(ports.tracking)} and {url(ports.tracking_2)}",
            f"  monitor    {url(ports.monitor)}",
            f"  sandboxes  {url(ports.payment_sandbox)} (payments), "
            f"{url(ports.notification_sandbox)} (notifications)",
            f"  redis      redis://127.0.0.1:{ports.backends.redis}",
            f"  mongodb    mongodb://127.0.0.1:{ports.backends.mongo}",
            f"  s3         {url(ports.backends.s3)}",
            "  token      make token ROLE=driver SUB=d1",
            "  logs       make logs      stop: make stop",
        ]
    )


def preflight(ports: StackPorts) -> str | None:
    """Why the stack cannot start here, or None when it can."""
    if read_state() is not None:
        return "the stack is already running (make status; make stop)"
    try:
        redis_binary()
    except MissingBinary as exc:
        return str(exc)
    busy = [f"{name} ({port})" for name, port in ports.all().items() if port_in_use(port)]
    if busy:
        return (
            "these ports are taken by another process: "
            + ", ".join(busy)
            + "\nfree them or choose others, e.g. GATEWAY_PORT=9080 REDIS_PORT=6390 make up"
        )
    return None


def startable_ports() -> StackPorts | None:
    """The ports to start on, or None after telling the user why the stack cannot start."""
    try:
        ports = StackPorts.from_env()
    except ValueError as exc:
        problem: str | None = str(exc)
    else:
        problem = preflight(ports)
        if problem is None:
            return ports
    print(problem, file=sys.stderr)
    return None


def cmd_up(args: argparse.Namespace) -> int:
    ports = startable_ports()
    if ports is None:
        return 1
    supervisor = Supervisor(
        stack_groups(ports, data_dir()), state_path(), log_dir(), echo=not args.quiet
    )
    if not args.quiet:
        print(f"Starting the Tripline stack (data in {data_dir()}); Ctrl-C stops it.")
        print(urls_text(ports))
    return supervisor.run({"ports": ports.all()})


def cmd_start(_args: argparse.Namespace) -> int:
    ports = startable_ports()
    if ports is None:
        return 1
    log_path().parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-m", "tripline.devstack.cli", "up", "--quiet"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log_path().open("a"),
        start_new_session=True,
    )
    while time.monotonic() - started < START_TIMEOUT_S:
        if child.poll() is not None:
            print("the stack failed to start; the end of its log:", file=sys.stderr)
            print(tail(log_path(), 40), file=sys.stderr)
            return 1
        state = read_state()
        if state is not None and state.get("status") == "ready":
            print(f"Tripline is up in {time.monotonic() - started:.0f}s:")
            print(urls_text(ports))
            return 0
        time.sleep(0.5)
    print(f"the stack was not ready within {START_TIMEOUT_S:g}s; stopping it", file=sys.stderr)
    cmd_stop(_args)
    return 1


def cmd_stop(_args: argparse.Namespace) -> int:
    try:
        state: dict[str, Any] = json.loads(state_path().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        print("the stack is not running")
        return 0
    supervisor = recorded_pid(state.get("supervisor"))
    if supervisor is not None and same_process(*supervisor):
        with contextlib.suppress(ProcessLookupError):
            os.kill(supervisor[0], signal.SIGTERM)
        deadline = time.monotonic() + 90
        while same_process(*supervisor) and time.monotonic() < deadline:
            time.sleep(0.2)
    # Whatever the supervisor could not stop, or outlived a supervisor that was killed; a pid
    # now used by an unrelated process is left alone.
    for entry in state.get("processes", {}).values():
        recorded = recorded_pid(entry)
        if recorded is not None and same_process(*recorded):
            stop_group(recorded[0], 10)
    if supervisor is not None and same_process(*supervisor):
        stop_group(supervisor[0], 5)
    state_path().unlink(missing_ok=True)
    print("the stack is stopped")
    return 0


def cmd_status(_args: argparse.Namespace) -> int:
    state = read_state()
    if state is None:
        print("the stack is not running (make start)")
        return 1
    supervisor = recorded_pid(state.get("supervisor"))
    print(f"stack: {state.get('status')} (supervisor pid {supervisor[0] if supervisor else '?'})")
    ports: dict[str, int] = state.get("ports", {})
    for name, entry in state.get("processes", {}).items():
        recorded = recorded_pid(entry)
        alive = recorded is not None and same_process(*recorded)
        pid = recorded[0] if recorded else "?"
        port = ports.get(name, "-")
        print(f"  {name:<22} {'running' if alive else 'STOPPED':<8} pid {pid!s:<8} port {port}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    path = log_path()
    if not path.exists():
        print("no logs yet (make start)")
        return 1
    argv = ["tail", "-n", str(args.lines)] + (["-f"] if args.follow else []) + [str(path)]
    os.execvp("tail", argv)


def cmd_token(args: argparse.Namespace) -> int:
    secret = os.environ.get("JWT_SECRET", LOCAL_JWT_SECRET)
    print(mint_token(secret, sub=args.sub, role=Role(args.role), ttl_s=args.ttl))
    return 0


def tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tripline-stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run the stack in the foreground (Ctrl-C stops it)")
    up.add_argument("--quiet", action="store_true", help="log to the log file only")
    up.set_defaults(run=cmd_up)
    commands.add_parser("start", help="run the stack in the background").set_defaults(run=cmd_start)
    commands.add_parser("stop", help="stop the stack").set_defaults(run=cmd_stop)
    commands.add_parser("status", help="show what runs").set_defaults(run=cmd_status)
    logs = commands.add_parser("logs", help="show the stack's logs")
    logs.add_argument("-n", "--lines", type=int, default=200)
    logs.add_argument("--no-follow", dest="follow", action="store_false")
    logs.set_defaults(run=cmd_logs)
    token = commands.add_parser("token", help="print a local JWT")
    token.add_argument("--role", choices=[role.value for role in Role], default="rider")
    token.add_argument("--sub", default="u1")
    token.add_argument("--ttl", type=int, default=24 * 3600)
    token.set_defaults(run=cmd_token)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
