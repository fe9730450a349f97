"""What became of the acknowledged writes, read where they end up: MongoDB (``sos``,
``trips``, ``payments``, ``uploads``, ``location_history``) and the providers' own records
(the sandbox's charges and sent notifications).

``lost``: a write the platform acknowledged that is not applied (waited for up to the settle
bound: queued writes, pending payments, archived SOS and flushed locations take a while).
``twice``: a write applied more than once, counted over everything the run did, k6's
background writes included where the record tells who sent it twice:

- an SOS message archived under two ids (the client's own, each message is unique);
- an event id twice in one trip's history, or one status reached twice (every trip);
- a payment charged twice at the provider: two charges with one reference (every payment);
- a document's verdict sent twice: two verdict notifications for one upload (every upload);
- an SOS's notification to operations sent twice (every SOS);
- a location point stored twice (the client's own points).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from tripline.loadtest.chaos.records import Accepted

CATEGORIES = (
    "sos",
    "notifications",
    "trips",
    "status_changes",
    "payments",
    "uploads",
    "locations",
)
OPERATIONS = "operations@tripline.local"
LOOK_EVERY_S = 2.0


@dataclass
class Stores:
    """Where the records are: the stack's database and its two providers."""

    db: AsyncDatabase[dict[str, Any]]
    http: httpx.AsyncClient
    payments_url: str
    notifications_url: str
    operations: str = OPERATIONS


async def lost(stores: Stores, accepted: Accepted) -> dict[str, int]:
    """Acknowledged writes not (yet) applied, per category."""
    db = stores.db
    sos = {doc["_id"]: doc async for doc in db.sos.find({"_id": {"$in": list(accepted.sos)}})}
    archived = {sos_id for sos_id, doc in sos.items() if "trip_id" in doc}
    notified = {
        sos_id
        for sos_id, doc in sos.items()
        if any(d.get("to") == stores.operations for d in doc.get("deliveries") or ())
    }
    trips = {
        doc["_id"]: doc
        async for doc in db.trips.find(
            {"_id": {"$in": list(accepted.trips)}}, {"history.event_id": 1}
        )
    }
    applied_events = {
        trip_id: {entry.get("event_id") for entry in doc.get("history") or ()}
        for trip_id, doc in trips.items()
    }
    missing_events = sum(
        1
        for trip_id, events in accepted.status_events.items()
        for event in events
        if event not in applied_events.get(trip_id, set())
    )
    charges = Counter(item["reference"] for item in await _items(stores, "payments"))
    payments = [
        doc async for doc in db.payments.find({"trip_id": {"$in": list(accepted.payments)}})
    ]
    settled = {
        doc["trip_id"]
        for doc in payments
        if doc.get("status") == "confirmed" and charges[doc["_id"]] >= 1
    }
    verified = {
        doc["_id"]
        async for doc in db.uploads.find(
            {"_id": {"$in": list(accepted.uploads)}, "status": "verified"}, {"_id": 1}
        )
    }
    stored = await _stored_points(stores, accepted)
    return {
        "sos": len(set(accepted.sos) - archived),
        "notifications": len(set(accepted.sos) - notified),
        "trips": len(accepted.trips - set(trips)),
        "status_changes": missing_events,
        "payments": len(accepted.payments - settled),
        "uploads": len(accepted.uploads - verified),
        "locations": len(accepted.points - set(stored)),
    }


async def twice(stores: Stores, accepted: Accepted) -> dict[str, int]:
    """Writes applied more than once, per category (see the module docstring)."""
    db = stores.db
    messages = Counter(
        [
            doc.get("message")
            async for doc in db.sos.find(
                {"message": {"$in": list(accepted.sos_sent)}}, {"message": 1}
            )
        ]
    )
    repeated_events = 0
    async for doc in db.trips.find({}, {"history": 1}):
        history = doc.get("history") or []
        repeated_events += _repeats(entry.get("event_id") for entry in history)
        repeated_events += _repeats(entry.get("to") for entry in history)
    charges = Counter(item["reference"] for item in await _items(stores, "payments"))
    sent = await _items(stores, "notifications")
    verdicts = Counter(
        item["reference"]
        for item in sent
        if str(item.get("to", "")).startswith("driver:") and _is_verdict(item)
    )
    to_operations = Counter(
        item["reference"] for item in sent if item.get("to") == stores.operations
    )
    return {
        "sos": _repeats_counted(messages),
        "notifications": _repeats_counted(to_operations),
        "trips": 0,
        "status_changes": repeated_events,
        "payments": _repeats_counted(charges),
        "uploads": _repeats_counted(verdicts),
        "locations": _repeats_counted(await _stored_points(stores, accepted)),
    }


async def settle(
    stores: Stores, accepted: Accepted, bound_s: float
) -> tuple[dict[str, int], float | None]:
    """Look again every :data:`LOOK_EVERY_S` until nothing acknowledged is missing and no
    upload of any client is left queued or processing (k6's too: one still unfinished after
    the bound is stuck, not merely late), or ``bound_s`` passed; returns what is still missing
    and how long until nothing acknowledged was (None: not within the bound)."""
    started = time.monotonic()
    settled: float | None = None
    while True:
        missing = await lost(stores, accepted)
        waited = time.monotonic() - started
        if settled is None and not any(missing.values()):
            settled = waited
        if settled is not None and not await unfinished_uploads(stores):
            return missing, settled
        if waited + LOOK_EVERY_S > bound_s:
            return missing, settled
        await asyncio.sleep(LOOK_EVERY_S)


async def unfinished_uploads(stores: Stores) -> int:
    """Uploads of any client whose completion was taken (queued) but have no verdict yet."""
    return await stores.db.uploads.count_documents({"status": {"$in": ["queued", "processing"]}})


async def upload_states(stores: Stores, accepted: Accepted) -> dict[str, dict[str, int]]:
    """How many uploads are in each status: the client's acknowledged ones (to tell stuck from
    failed) and every upload of the run, k6's included (whose ids no client recorded: one
    still ``queued`` or ``processing`` after the settle window is stuck, whoever sent it)."""
    mine: Counter[str] = Counter()
    every: Counter[str] = Counter()
    async for doc in stores.db.uploads.find({}, {"status": 1}):
        status = str(doc.get("status"))
        every[status] += 1
        if doc["_id"] in accepted.uploads:
            mine[status] += 1
    return {"client": dict(mine), "all": dict(every)}


async def _stored_points(stores: Stores, accepted: Accepted) -> Counter[tuple[str, float]]:
    trip_ids = list({trip_id for trip_id, _ in accepted.points})
    stored = [
        (str(doc["trip_id"]), float(doc["ts"]))
        async for doc in stores.db.location_history.find(
            {"trip_id": {"$in": trip_ids}}, {"trip_id": 1, "ts": 1}
        )
    ]
    return Counter(stored)


async def _items(stores: Stores, provider: str) -> list[dict[str, Any]]:
    base = stores.payments_url if provider == "payments" else stores.notifications_url
    answer = await stores.http.get(f"{base}/v1/{provider}", timeout=30)
    answer.raise_for_status()
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def _is_verdict(item: dict[str, Any]) -> bool:
    # The worker's verdict notice (worker/documents.py verdict_notice), not upload's delay one.
    message = str(item.get("message", ""))
    return " was verified." in message or " was not accepted" in message


def _repeats(values: Iterable[Any]) -> int:
    return _repeats_counted(Counter(value for value in values if value is not None))


def _repeats_counted(counts: Counter[Any]) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)
