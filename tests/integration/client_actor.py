"""A driver's app for the client SDK's tests, run as its own process while the gateway is down.

Usage: ``python client_actor.py '<json>'`` with ``base_url``, ``token``, ``data_dir``,
``trip_id`` and ``points``. It raises an SOS, marks the trip arrived and sends the points, then
prints one JSON line per action (``kind``, ``id``, ``state``, ``message``), a line with the
ids :meth:`Tripline.pending_actions` lists, and ``ALL QUEUED``; then it waits to be killed, as
an app the system ends while it still holds unsent actions.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from tripline_client.backoff import Backoff
from tripline_client.client import Tripline
from tripline_client.config import ClientConfig

READY = "ALL QUEUED"


async def act(order: dict[str, Any]) -> None:
    # No retries inside a call: the first refused connection already says "offline".
    config = ClientConfig(max_retries=0, probe_backoff=Backoff(base_s=0.2, cap_s=1.0))
    client = Tripline(order["base_url"], order["token"], Path(order["data_dir"]), config=config)
    async with client:
        trip_id = order["trip_id"]
        deliveries = [
            await client.send_sos(trip_id, lat=52.521, lng=13.406, message="help"),
            await client.change_status(trip_id, "arrived"),
            await client.send_locations(trip_id, order["points"]),
        ]
        for delivery in deliveries:
            line = {
                "kind": delivery.action.kind.value,
                "id": delivery.action_id,
                "state": delivery.state,
                "message": delivery.message,
            }
            print(json.dumps(line), flush=True)
        print(json.dumps({"pending": [a.id for a in client.pending_actions()]}), flush=True)
        print(READY, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(act(json.loads(sys.argv[1])))
