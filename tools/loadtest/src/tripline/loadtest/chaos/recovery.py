"""Full recovery, as an operator and an app see it: the gateway's ``GET /health`` says ``ok``
and a write is applied at once (``PATCH /api/users/me`` answers 200, not 202 ``pending``,
which would mean it was queued for a database that is still away)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from tripline.common.auth import Role
from tripline.loadtest.chaos.client import Api, Person

LOOK_EVERY_S = 0.5
# Probe users take turns, so the standard tier (100 a minute per user) never refuses them.
PROBE_USERS = 4


@dataclass(frozen=True)
class Look:
    """One look: when it was complete (monotonic), the health status and the write's answer."""

    at: float
    health: str
    write_status: int

    @property
    def recovered(self) -> bool:
        return self.health == "ok" and self.write_status == 200

    def as_json(self, origin: float) -> dict[str, Any]:
        return {
            "t_s": round(self.at - origin, 2),
            "health": self.health,
            "write": self.write_status,
        }


class Watcher:
    """Looks at the platform as :func:`look` says, taking turns among probe users."""

    def __init__(self, api: Api, tag: str) -> None:
        self.api = api
        self.users = [Person(f"{tag}-probe{n}", Role.RIDER) for n in range(PROBE_USERS)]
        self.turn = 0

    async def look(self) -> Look:
        """Ask ``/health`` and make one profile write, side by side."""
        who = self.users[self.turn % len(self.users)]
        self.turn += 1
        health, write = await asyncio.gather(
            self.api.call("GET", "/health"),
            self.api.call("PATCH", "/api/users/me", who, body={"name": f"Probe {self.turn}"}),
        )
        status = health.body.get("status") if isinstance(health.body, dict) else None
        return Look(time.monotonic(), str(status or f"no answer ({health.status})"), write.status)

    async def until_recovered(self, bound_s: float) -> tuple[float | None, list[Look]]:
        """Look every :data:`LOOK_EVERY_S` until a look shows recovery or ``bound_s`` passes;
        returns the time of the first recovered look (None if none) and every look."""
        looks: list[Look] = []
        give_up = time.monotonic() + bound_s
        while time.monotonic() < give_up:
            look = await self.look()
            looks.append(look)
            if look.recovered:
                return look.at, looks
            await asyncio.sleep(LOOK_EVERY_S)
        return None, looks
