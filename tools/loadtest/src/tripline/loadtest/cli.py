"""``tripline-loadtest``: run a load profile against a private local stack or a deployment.

    tripline-loadtest smoke                      # a private stack, the smoke profile
    tripline-loadtest ci --target https://staging.example --gate
    tripline-loadtest smoke --update-baseline    # record the gate's baseline from this run

The Makefile's ``loadtest`` and ``loadtest-baseline`` targets call it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from tripline.loadtest.profiles import ProfileError
from tripline.loadtest.run import Options, SetupError, execute
from tripline.loadtest.sla import SlaFileError
from tripline.loadtest.stack import StackError


def parse_setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: settings are NAME=VALUE")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tripline-loadtest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("profile", help="a profile of tests/load/profiles.yaml")
    parser.add_argument("--target", help="a deployment's base URL (default: a private stack)")
    parser.add_argument(
        "--tokens-file",
        type=Path,
        help='pre-issued tokens {"rider": [...], "driver": [...], "admin": [...]} '
        "instead of signing with JWT_SECRET",
    )
    parser.add_argument("--out", type=Path, help="where run folders go (.loadtest/runs)")
    parser.add_argument("--profiles", type=Path, help="a profiles file (tests/load/profiles.yaml)")
    parser.add_argument(
        "--gate",
        action="store_true",
        help="also fail on a regression from tests/load/baseline.json",
    )
    parser.add_argument(
        "--update-baseline",
        action="store_true",
        help="write this run's ratios as the profile's baseline",
    )
    parser.add_argument("--keep-stack", action="store_true", help="leave the private stack up")
    parser.add_argument(
        "--set",
        dest="settings",
        type=parse_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for every process of the private stack, e.g. FAULT_DELAY_S=0.6",
    )
    parser.add_argument(
        "--py-spy",
        action="append",
        default=[],
        metavar="PROCESS",
        help="profile this process of the private stack with py-spy",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every scenario's VUs (to find how much load the platform carries)",
    )
    args = parser.parse_args(argv)
    options = Options(
        profile=args.profile,
        target=args.target,
        tokens_file=args.tokens_file,
        gate=args.gate,
        update_baseline=args.update_baseline,
        keep_stack=args.keep_stack,
        stack_settings=dict(args.settings),
        py_spy=tuple(args.py_spy),
        scale=args.scale,
    )
    if args.out is not None:
        options.out = args.out
    if args.profiles is not None:
        options.profiles_file = args.profiles
    try:
        return asyncio.run(execute(options))
    except (ProfileError, SlaFileError, StackError, SetupError) as exc:
        print(f"tripline-loadtest: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
