"""``POST /api/trips/{id}/sos`` and the archiver that moves SOS records into MongoDB.

An SOS is written durably before it is answered: to the Redis stream ``sos:records`` (the
local Redis runs with appendonly; production Redis must persist too, or an SOS acknowledged
just before a crash is lost), or, when Redis is down, straight into MongoDB's ``sos``
collection. Only then is it fanned out, best effort, to the trip's channel and to the
notification queue. The archiver copies stream entries into MongoDB with a consumer group, so
an entry is acknowledged only once it is stored, and entries left pending by a dead replica
are claimed by a live one.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tripline.common.auth import Identity
from tripline.common.channels import publish_event, read_parties
from tripline.common.errors import DependencyUnavailable, NotFound
from tripline.common.logs import get_logger
from tripline.common.mongo import Document, translate_errors
from tripline.common.notifications import Notification, notification_id, queue_notifications
from tripline.common.validation import parse_body
from tripline.core.context import Core, core_of
from tripline.core.models import SosRequest
from tripline.core.user_routes import load_profile

log = get_logger(__name__)

SOS_STREAM = "sos:records"
SOS_GROUP = "archivers"
SOS_COLLECTION = "sos"
IDEMPOTENCY_TTL_S = 24 * 3600
ARCHIVE_BATCH = 100

# Remembers the key and appends the record in one step, so a replay can never find the key
# without the record it stands for.
_ADD_ONCE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
  return 1
end
return 0
"""


def sos_id_for(user_id: str, idempotency_key: str | None) -> str:
    """A fresh id, or for a replayed request (same user, same key) the id of its first try."""
    if not idempotency_key:
        return uuid.uuid4().hex
    return hashlib.sha256(f"sos\x00{user_id}\x00{idempotency_key}".encode()).hexdigest()[:32]


def idempotency_key_name(sos_id: str) -> str:
    return f"sos:idem:{sos_id}"


@dataclass(frozen=True)
class SosRecord:
    sos_id: str
    trip_id: str
    by: str
    lat: float
    lng: float
    message: str | None
    created_at: datetime

    def fields(self) -> dict[str, str]:
        """The record as stream entry fields (strings; no message is an empty one)."""
        return {
            "sos_id": self.sos_id,
            "trip_id": self.trip_id,
            "by": self.by,
            "lat": repr(self.lat),
            "lng": repr(self.lng),
            "message": self.message or "",
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> SosRecord:
        """The record :meth:`fields` wrote. Raises ``KeyError``/``ValueError`` for anything else."""
        return cls(
            sos_id=fields["sos_id"],
            trip_id=fields["trip_id"],
            by=fields["by"],
            lat=float(fields["lat"]),
            lng=float(fields["lng"]),
            message=fields["message"] or None,
            created_at=datetime.fromisoformat(fields["created_at"]),
        )

    def document(self) -> Document:
        """The audit fields of the MongoDB ``sos`` document (deliveries are the worker's)."""
        return {name: value for name, value in asdict(self).items() if name != "sos_id"}

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> SosRecord:
        """The record a :meth:`document` (with its ``_id``) holds."""
        fields: dict[str, Any] = {name: document[name] for name in ("trip_id", "by", "lat", "lng")}
        return cls(
            sos_id=str(document["_id"]),
            message=document.get("message"),
            created_at=document["created_at"],
            **fields,
        )


def plan_notifications(
    record: SosRecord, *, contact_phone: str | None, operations_address: str
) -> list[Notification]:
    """Who hears of the SOS: operations always, the rider's emergency contact when there is one.

    Ids derive from the SOS id and the recipient, so planning twice yields the same
    notifications and the provider's idempotency key keeps each one to a single message.
    """
    where = f"{record.lat:.5f},{record.lng:.5f}"
    text = f"SOS on trip {record.trip_id} by {record.by} at {where}"
    if record.message:
        text = f"{text}: {record.message}"
    targets = [("email", operations_address)]
    if contact_phone:
        targets.append(("sms", contact_phone))
    return [
        Notification(
            id=notification_id(record.sos_id, to),
            to=to,
            channel=channel,
            message=text[:1000],
            reference=record.sos_id,
        )
        for channel, to in targets
    ]


@dataclass
class Sos:
    """What the SOS route needs besides :class:`Core`: the Celery producer."""

    core: Core
    producer: Celery
    records: AsyncCollection[Document]

    async def persist(self, record: SosRecord, *, idempotent: bool) -> bool:
        """Store ``record`` durably; returns False when it is a replay already stored.

        Raises :class:`DependencyUnavailable` when neither Redis nor MongoDB took it.
        """
        try:
            if not idempotent:
                await self.core.redis.xadd(SOS_STREAM, record.fields())  # type: ignore[arg-type]
                return True
            added = await self.core.redis.eval(
                _ADD_ONCE,
                2,
                idempotency_key_name(record.sos_id),
                SOS_STREAM,
                record.sos_id,
                IDEMPOTENCY_TTL_S,
                *[part for pair in record.fields().items() for part in pair],
            )
            return bool(added)
        except (RedisError, OSError) as exc:
            log.warning(
                "SOS not streamed, writing to MongoDB", sos_id=record.sos_id, error=repr(exc)
            )
        with translate_errors(self.core.mongo_guard):
            try:
                await self.records.insert_one(
                    {"_id": record.sos_id, **record.document(), "deliveries": [], "notified": False}
                )
            except DuplicateKeyError:
                return False
        return True

    async def fan_out(self, record: SosRecord, rider_id: str | None) -> None:
        """Publish the SOS on the trip's channel and queue its notifications; logs failures."""
        event = {
            "type": "sos",
            "sos_id": record.sos_id,
            "lat": record.lat,
            "lng": record.lng,
            "message": record.message,
            "by": record.by,
        }
        try:
            await publish_event(self.core.redis, record.trip_id, event)
        except (RedisError, OSError) as exc:
            log.warning("SOS not published", sos_id=record.sos_id, error=repr(exc))
        try:
            await self.notify(record, rider_id)
        except (RedisError, OSError, DependencyUnavailable) as exc:
            log.warning("SOS notifications not queued", sos_id=record.sos_id, error=repr(exc))

    async def notify(self, record: SosRecord, rider_id: str | None) -> None:
        """Store and queue the SOS's notifications. Raises on a Redis or broker failure."""
        contact_phone = await self._contact_phone(rider_id)
        notifications = plan_notifications(
            record,
            contact_phone=contact_phone,
            operations_address=self.core.settings.sos_operations_address,
        )
        await queue_notifications(self.core.redis, self.producer, notifications)

    async def _contact_phone(self, rider_id: str | None) -> str | None:
        # Through the profile caches (the rider's app keeps theirs warm) and the last known
        # copy: an SOS must not queue behind a busy database for a phone number.
        if rider_id is None:
            return None
        try:
            profile = (await load_profile(self.core, rider_id, own=True)).value
        except DependencyUnavailable:
            return None
        contact = (profile if isinstance(profile, dict) else {}).get("emergency_contact") or {}
        phone = contact.get("phone")
        return phone if isinstance(phone, str) else None


async def trip_parties(core: Core, trip_id: str) -> tuple[str, str | None]:
    """The trip's rider and driver: from the Redis parties record core keeps on every change
    of the trip, else from MongoDB, so an SOS neither waits behind a busy database nor needs
    one that is down.

    Raises :class:`NotFound` when neither knows the trip, :class:`DependencyUnavailable` when
    Redis cannot tell and MongoDB does not answer.
    """
    try:
        recorded = await read_parties(core.redis, trip_id)
    except (RedisError, OSError) as exc:
        log.warning("trip parties not read from Redis", trip_id=trip_id, error=repr(exc))
        recorded = None
    if recorded is not None and recorded["rider_id"] is not None:
        return recorded["rider_id"], recorded["driver_id"]
    document = await core.trips.get(trip_id)
    if document is None:
        raise NotFound(f"no trip {trip_id}")
    driver_id = document.get("driver_id")
    return str(document["rider_id"]), None if driver_id is None else str(driver_id)


def may_raise(identity: Identity, *, rider_id: str, driver_id: str | None) -> bool:
    """Only someone in the trip raises its SOS: an admin acting for them would put a name other
    than the person in danger on the record."""
    return identity.user_id == rider_id or (driver_id is not None and identity.user_id == driver_id)


async def raise_sos(request: Request) -> Response:
    sos: Sos = request.app.state.sos
    core = core_of(request)
    identity = await core.identity(request)
    trip_id = request.path_params["trip_id"]
    body = await parse_body(request, SosRequest)
    rider_id, driver_id = await trip_parties(core, trip_id)
    if not may_raise(identity, rider_id=rider_id, driver_id=driver_id):
        raise NotFound(f"no trip {trip_id}")
    key = request.headers.get("idempotency-key")
    record = SosRecord(
        sos_id=sos_id_for(identity.user_id, key),
        trip_id=trip_id,
        by=identity.user_id,
        lat=body.lat,
        lng=body.lng,
        message=body.message,
        created_at=datetime.now(UTC),
    )
    if await sos.persist(record, idempotent=bool(key)):
        await sos.fan_out(record, rider_id)
    return JSONResponse({"id": record.sos_id, "status": "accepted"}, status_code=202)


ROUTES = [Route("/api/trips/{trip_id}/sos", raise_sos, methods=["POST"])]
