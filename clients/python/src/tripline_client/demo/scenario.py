"""The demo's story: a rider and a driver, each with their own app on a flaky network, share one
trip from request to completion; then a summary of what the SDK went through."""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from tripline_client import Backoff, ClientConfig, TriplineError
from tripline_client.demo.console import Console
from tripline_client.demo.driver import Driver, Route
from tripline_client.demo.phone import Phone
from tripline_client.demo.rider import DESTINATION, ORIGIN, Rider

# Short waits everywhere, so a test sees the whole story in seconds; the backoffs keep their
# shape (exponential, jittered), only their scale changes.
FAST_CONFIG = ClientConfig(
    timeout_s=5.0,
    backoff=Backoff(base_s=0.05, cap_s=0.5),
    probe_backoff=Backoff(base_s=0.1, cap_s=1.0),
    subscription_backoff=Backoff(base_s=0.1, cap_s=1.0),
    background_probe_cap_s=2.0,
    action_wait_s=3.0,
)


@dataclass(frozen=True)
class Options:
    gateway: str
    rider_token: str
    driver_token: str
    data_dir: Path | None
    """Where the apps keep their files; ``None``: a temporary folder, removed after."""
    drop: float
    points: int
    seed: int
    fast: bool

    @property
    def tick_s(self) -> float:
        """The story's beat: a location batch per tick, breaks and tunnels a few ticks long."""
        return 0.2 if self.fast else 1.0

    @property
    def deadline_s(self) -> float:
        """How long the trip may take before the demo calls it a failure."""
        return 60.0 + self.points * self.tick_s * 4


async def run(
    options: Options,
    *,
    console: Console,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
) -> bool:
    """Play the story against ``options.gateway`` and print it, then the summary.

    Returns whether it went well: every critical action applied, and the rider saw every event
    of the trip. Problems the platform or network cause are printed, never raised.
    """
    with ExitStack() as stack:
        root = options.data_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="tripline-demo-"))
        )
        return await _play(options, root, console=console, clock=clock, sleep=sleep)


async def _play(
    options: Options,
    root: Path,
    *,
    console: Console,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
) -> bool:
    config = FAST_CONFIG if options.fast else ClientConfig()

    def phone(who: str, token: str) -> Phone:
        return Phone(
            who,
            gateway=options.gateway,
            token=token,
            data_dir=root / who,
            config=config,
            drop=options.drop,
            # Seeded per phone and purpose, so a seed replays the same failures.
            network_rand=random.Random(f"{options.seed}-{who}-network"),  # noqa: S311 (no crypto)
            sdk_rand=random.Random(f"{options.seed}-{who}-sdk"),  # noqa: S311 (no crypto)
            clock=clock,
            console=console,
        )

    rider_phone = phone("rider", options.rider_token)
    driver_phone = phone("driver", options.driver_token)
    rider = Rider(rider_phone, tick_s=options.tick_s, sleep=sleep)
    route = Route(pickup=ORIGIN, towards=DESTINATION, points=options.points)
    driver = Driver(driver_phone, route, tick_s=options.tick_s, sleep=sleep, clock=clock)
    finished = False
    async with rider_phone.client, driver_phone.client:
        try:
            async with asyncio.timeout(options.deadline_s):
                trip_id = await rider.request_trip()
                async with asyncio.TaskGroup() as group:
                    group.create_task(rider.ride(trip_id))
                    group.create_task(driver.work(trip_id))
            finished = True
        except* TimeoutError:
            console.say("demo", f"the trip did not finish within {options.deadline_s:.0f} s")
        except* TriplineError as failures:
            for failure in failures.exceptions:
                if isinstance(failure, TriplineError):
                    console.say("demo", f"stopped: {failure.user_message} ({failure.detail})")
        pending = rider_phone.pending() + driver_phone.pending()
    return _summary(console, rider, [rider_phone, driver_phone], pending, finished=finished)


def _summary(
    console: Console, rider: Rider, phones: list[Phone], pending: int, *, finished: bool
) -> bool:
    applied = sum(phone.applied for phone in phones)
    failed = sum(phone.failed for phone in phones)
    stats = [phone.network.stats for phone in phones]
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(rider.events.items()))
    seen = f" ({kinds}; #{rider.first_seq} to #{rider.last_seq})" if rider.events else ""
    lines = [
        f"actions: {applied} applied, {failed} failed, {pending} still queued",
        f"network: {sum(s.requests for s in stats)} requests, "
        f"{sum(s.refused for s in stats)} refused, "
        f"{sum(s.answers_lost for s in stats)} answers lost, "
        f"{sum(s.in_tunnel for s in stats)} refused in the tunnel",
        f"retries: {sum(s.resent for s in stats)} writes sent again with the same Idempotency-Key",
        f"live view: {rider.events.total()} events{seen}, {rider.reconnects} reconnects",
        f"missing seq: {rider.missing or 'none'}",
    ]
    ok = finished and failed == 0 and pending == 0 and rider.missing == 0
    for line in [*lines, "OK" if ok else "NOT OK"]:
        console.say("summary", line)
    return ok
