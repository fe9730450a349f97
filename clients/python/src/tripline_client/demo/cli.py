"""The demo's command line: its options, and running the story with them."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tripline_client.demo.console import Console
from tripline_client.demo.scenario import Options, run

MINT_COMMAND = "export TRIPLINE_{upper}_TOKEN=$(make -s token ROLE={role} SUB={sub})"


def parser() -> argparse.ArgumentParser:
    """The demo's argument parser (its ``--help`` lists every option)."""
    command = argparse.ArgumentParser(
        prog="python -m tripline_client.demo",
        description="A rider and a driver share a trip over a deliberately flaky network, "
        "using the Tripline SDK; exits 0 when every action was applied and the rider missed "
        "no event.",
    )
    command.add_argument(
        "--gateway",
        default="http://127.0.0.1:8080",
        help="the gateway's URL (default: %(default)s)",
    )
    command.add_argument("--rider-token", help="a rider's token (default: $TRIPLINE_RIDER_TOKEN)")
    command.add_argument(
        "--driver-token", help="a driver's token (default: $TRIPLINE_DRIVER_TOKEN)"
    )
    command.add_argument(
        "--data-dir",
        type=Path,
        help="where the apps keep their files (default: a temporary folder, removed after)",
    )
    command.add_argument(
        "--drop",
        type=_fraction,
        default=0.2,
        help="the fraction of requests the network fails: half never sent, half with the "
        "answer lost (default: 0.2)",
    )
    command.add_argument(
        "--points",
        type=_points,
        default=20,
        help="location points the driver sends (default: %(default)s)",
    )
    command.add_argument("--seed", type=int, help="makes the network's failures repeatable")
    command.add_argument("--fast", action="store_true", help="short intervals (for tests)")
    return command


def parse(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Options:
    """The options from ``argv`` (default: the command line) and ``environ``. Exits with a
    usage message (status 2) when an option is invalid or a token is missing."""
    command = parser()
    args = command.parse_args(argv)
    tokens: dict[str, str] = {}
    for role, sub in (("rider", "r1"), ("driver", "d1")):
        token = getattr(args, f"{role}_token") or environ.get(f"TRIPLINE_{role.upper()}_TOKEN")
        if not token:
            hint = MINT_COMMAND.format(upper=role.upper(), role=role, sub=sub)
            command.error(f"no {role} token: pass --{role}-token, or run: {hint}")
        tokens[role] = token
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    return Options(
        gateway=args.gateway,
        rider_token=tokens["rider"],
        driver_token=tokens["driver"],
        data_dir=args.data_dir,
        drop=args.drop,
        points=args.points,
        seed=seed,
        fast=args.fast,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo with ``argv`` (default: the command line); the exit status: 0 when every
    action was applied and the rider saw every event, else 1."""
    options = parse(argv, os.environ)
    console = Console(time.monotonic, functools.partial(print, flush=True))
    console.say("demo", f"seed {options.seed} (run again with --seed {options.seed})")
    ok = asyncio.run(run(options, console=console, clock=time.time, sleep=asyncio.sleep))
    return 0 if ok else 1


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a fraction from 0 to 1, not {text}")
    return value


def _points(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"at least 2 points, not {text}")
    return value
