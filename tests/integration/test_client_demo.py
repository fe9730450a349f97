"""The SDK's demo, run as a user runs it (``python -m tripline_client.demo``) against the whole
platform: over a network that fails three requests in ten, and a tunnel with no signal, every
action of the trip is applied and the rider misses no event."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from tripline.common.auth import Role, mint_token
from tripline.common.settings import LOCAL_JWT_SECRET
from tripline.devstack.harness import scaled
from tripline.devstack.platform import PlatformStack
from tripline.devstack.testing import fresh

pytestmark = pytest.mark.integration


async def demo(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the demo with ``args``; its exit status, output and errors."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tripline_client.demo",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(scaled(120)):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_trip_survives_a_flaky_network(
    client_platform: PlatformStack, tmp_path: Path
) -> None:
    rider = mint_token(LOCAL_JWT_SECRET, sub=fresh("demo-rider"), role=Role.RIDER)
    driver = mint_token(LOCAL_JWT_SECRET, sub=fresh("demo-driver"), role=Role.DRIVER)

    status, out, err = await demo(
        "--fast",
        "--drop",
        "0.3",
        "--seed",
        "7",
        "--gateway",
        client_platform.gateway_url,
        "--rider-token",
        rider,
        "--driver-token",
        driver,
        "--data-dir",
        str(tmp_path),
    )

    assert status == 0, out + err
    applied = re.search(r"actions: (\d+) applied, 0 failed, 0 still queued", out)
    # Four statuses, ten location batches, one SOS.
    assert applied is not None, out
    assert int(applied.group(1)) == 15
    assert "missing seq: none" in out
    assert re.search(r"live view: \d+ events \(20 location, 1 snapshot, 1 sos, 4 status;", out)
    # The SOS raised in the tunnel was queued, then sent once the signal was back.
    assert "SOS: queued. No connection. Your SOS will be sent" in out
    assert "SOS: applied after all." in out
    resent = re.search(r"retries: (\d+) writes sent again", out)
    assert resent is not None, out
    assert int(resent.group(1)) > 0


async def test_a_missing_token_says_how_to_make_one() -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("TRIPLINE_RIDER_TOKEN", "TRIPLINE_DRIVER_TOKEN")
    }

    status, _, err = await demo("--fast", env=env)

    assert status == 2
    assert "make -s token ROLE=rider SUB=r1" in err
