"""The demo's driver: accepts the trip, drives to the pickup and on along a straight line,
streaming its position, and moves the trip through its statuses."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tripline_client.demo.phone import Phone

FIXES_PER_BATCH = 2
"""GPS fixes per location batch: the phone takes two a tick and sends them together."""
STEP_DEG = 0.00005
"""Distance between two fixes, in degrees (about 5 m): a car in town."""


@dataclass(frozen=True)
class Route:
    """``points`` positions on the straight line through ``pickup`` towards ``towards``; the
    first half leads up to the pickup, the second half goes on past it."""

    pickup: tuple[float, float]
    towards: tuple[float, float]
    points: int

    @property
    def heading(self) -> float:
        """The bearing of the line, in degrees from north."""
        d_lat = self.towards[0] - self.pickup[0]
        d_lng = self.towards[1] - self.pickup[1]
        return math.degrees(math.atan2(d_lng, d_lat)) % 360

    def positions(self) -> list[tuple[float, float]]:
        d_lat = self.towards[0] - self.pickup[0]
        d_lng = self.towards[1] - self.pickup[1]
        length = math.hypot(d_lat, d_lng) or 1.0
        step_lat, step_lng = STEP_DEG * d_lat / length, STEP_DEG * d_lng / length
        first = -(self.points // 2) + 1
        # Rounded as a GPS reports them, so the rider sees readable coordinates.
        return [
            (round(self.pickup[0] + i * step_lat, 6), round(self.pickup[1] + i * step_lng, 6))
            for i in range(first, first + self.points)
        ]


class Driver:
    """Drives ``route`` for the trip, one location batch every ``tick_s``."""

    def __init__(
        self,
        phone: Phone,
        route: Route,
        *,
        tick_s: float,
        sleep: Callable[[float], Awaitable[None]],
        clock: Callable[[], float],
    ) -> None:
        self.phone = phone
        self.route = route
        self._tick_s = tick_s
        self._sleep = sleep
        self._clock = clock

    async def work(self, trip_id: str) -> None:
        """Take the trip from accepted to completed; returns once every action has finished
        (applied, or failed for good).

        Nothing here waits for an action to be applied before the next: the SDK sends them in
        order, so a status held back by the network still reaches the platform before the
        locations that follow it.
        """
        client = self.phone.client
        positions = self.route.positions()
        half = len(positions) // 2
        await self.phone.act("trip accepted", client.change_status(trip_id, "accepted"))
        await self._drive(trip_id, positions[:half], offset=0)
        await self.phone.act("arrived at the pickup", client.change_status(trip_id, "arrived"))
        await self._sleep(self._tick_s)
        await self.phone.act("trip started", client.change_status(trip_id, "in_progress"))
        await self._drive(trip_id, positions[half:], offset=half)
        await self.phone.act("trip completed", client.change_status(trip_id, "completed"))
        await self.phone.settle()

    async def _drive(
        self, trip_id: str, positions: Sequence[tuple[float, float]], offset: int
    ) -> None:
        for start in range(0, len(positions), FIXES_PER_BATCH):
            await self._sleep(self._tick_s)
            batch = positions[start : start + FIXES_PER_BATCH]
            first = offset + start + 1
            what = f"locations {first}-{first + len(batch) - 1}/{self.route.points}"
            await self.phone.act(
                what, self.phone.client.send_locations(trip_id, self._fixes(batch))
            )

    def _fixes(self, batch: Sequence[tuple[float, float]]) -> list[dict[str, Any]]:
        # The fixes were taken over the tick just gone, evenly spaced, the last one now.
        now = self._clock()
        spacing = self._tick_s / len(batch)
        return [
            {
                "lat": lat,
                "lng": lng,
                "ts": now - (len(batch) - 1 - i) * spacing,
                "heading": self.route.heading,
            }
            for i, (lat, lng) in enumerate(batch)
        ]
