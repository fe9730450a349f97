"""Create COUNT accepted trips for make bench-tracking: each with its own rider and driver.

Usage: tracking-trips.py BASE_URL COUNT OUT_JSON   (JWT_SECRET from the environment)

Trip k: rider bench-rider-<k> requests it (POST /api/trips), driver bench-driver-<k> accepts it
(POST /api/trips/{id}/status), so that tracking lets its driver publish and admins watch.
Writes [{"id": ..., "driver": ...}, ...] in k order.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import httpx

from tripline.common.auth import Role, mint_token


async def one(client: httpx.AsyncClient, secret: str, k: int) -> dict[str, str]:
    rider = mint_token(secret, sub=f"bench-rider-{k}", role=Role.RIDER)
    driver_sub = f"bench-driver-{k}"
    driver = mint_token(secret, sub=driver_sub, role=Role.DRIVER)
    lat, lng = 52.4 + (k % 100) * 0.002, 13.3 + (k // 100) * 0.002
    created = await client.post(
        "/api/trips",
        headers={"Authorization": f"Bearer {rider}"},
        json={
            "origin": {"lat": lat, "lng": lng},
            "destination": {"lat": lat + 0.05, "lng": lng + 0.05},
        },
    )
    if created.status_code != 201:
        raise RuntimeError(f"POST /api/trips -> {created.status_code}: {created.text[:300]}")
    trip_id = created.json()["id"]
    accepted = await client.post(
        f"/api/trips/{trip_id}/status",
        headers={"Authorization": f"Bearer {driver}"},
        json={"status": "accepted"},
    )
    if accepted.status_code != 200:
        raise RuntimeError(
            f"POST /api/trips/{trip_id}/status -> {accepted.status_code}: {accepted.text[:300]}"
        )
    return {"id": trip_id, "driver": driver_sub}


async def create(base: str, count: int) -> list[dict[str, str]]:
    secret = os.environ["JWT_SECRET"]
    started = time.monotonic()
    gate = asyncio.Semaphore(16)

    async def bounded(client: httpx.AsyncClient, k: int) -> dict[str, str]:
        async with gate:
            return await one(client, secret, k)

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        trips = await asyncio.gather(*(bounded(client, k) for k in range(count)))
    print(
        f"{count} trips created and accepted in {time.monotonic() - started:.1f} s", file=sys.stderr
    )
    return list(trips)


if __name__ == "__main__":
    created = asyncio.run(create(sys.argv[1], int(sys.argv[2])))
    Path(sys.argv[3]).write_text(json.dumps(created))
