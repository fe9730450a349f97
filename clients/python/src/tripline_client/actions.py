"""Critical actions: the writes that must reach the platform even when the network does not.

An :class:`Action` is the whole request (method, path, JSON body) plus the id that travels as
its ``Idempotency-Key``, so the offline queue (:mod:`tripline_client.outbox`) can store it on
disk and send it again, after an outage or a restart, without it being applied twice. The
builders below are the only way the SDK makes actions: they check their inputs cheaply, so an
action that is certain to be refused never waits in the queue for hours first.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Final
from urllib.parse import quote

from tripline_client.errors import ValidationError

MAX_POINTS: Final = 100
"""The most location points the platform takes in one ``POST /api/tracking/location``."""

MAX_SOS_MESSAGE: Final = 500
MAX_ID_LENGTH: Final = 255
TRIP_STATUSES: Final = frozenset(
    {"requested", "accepted", "arrived", "in_progress", "completed", "cancelled"}
)
_POINT_FIELDS: Final = frozenset({"lat", "lng", "ts", "heading", "speed"})
_MAX_SPEED_MS: Final = 150.0


class ActionKind(StrEnum):
    """What an action does, and how to tell a person about it."""

    SOS = "sos"
    TRIP_STATUS = "trip_status"
    LOCATIONS = "locations"
    UPLOAD_COMPLETE = "upload_complete"

    @property
    def noun(self) -> str:
        """The thing the person sent, as they would name it ("your SOS")."""
        match self:
            case ActionKind.SOS:
                return "SOS"
            case ActionKind.TRIP_STATUS:
                return "trip update"
            case ActionKind.LOCATIONS:
                return "location"
            case ActionKind.UPLOAD_COMPLETE:
                return "document"

    @property
    def _verb(self) -> str:
        return "submitted" if self is ActionKind.UPLOAD_COMPLETE else "sent"

    @property
    def queued_message(self) -> str:
        """What to show when the action waits on disk for the network to come back."""
        return (
            f"No connection. Your {self.noun} will be {self._verb} as soon as you are back online."
        )

    @property
    def applied_message(self) -> str:
        """What to show once the platform has applied the action."""
        return f"Your {self.noun} was {self._verb}."


@dataclass(frozen=True)
class Action:
    """One critical write, as stored on disk and sent to the gateway.

    ``id`` is also the request's ``Idempotency-Key``; ``attempts`` counts the sends that failed
    for now (network down, service busy) and is kept by the queue, not by the builders.
    """

    id: str
    kind: ActionKind
    method: str
    path: str
    body: dict[str, Any] | None
    created_at: float
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The action as a JSON-able dict (the inverse of :meth:`from_dict`)."""
        return asdict(self) | {"kind": self.kind.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Action:
        """Rebuild an action from :meth:`to_dict`'s output.

        Raises ``ValueError`` (a field missing, a kind unknown) or ``TypeError`` (a field of the
        wrong type) when ``data`` does not have that shape: a corrupt record.
        """
        try:
            body = data["body"]
            fields = (data["id"], data["method"], data["path"])
            created_at, attempts = data["created_at"], data["attempts"]
            kind = ActionKind(data["kind"])
        except (KeyError, TypeError) as error:
            raise ValueError(f"not an action record: {error!r}") from error
        if not all(isinstance(field, str) for field in fields):
            raise TypeError("an action's id, method and path are strings")
        if body is not None and not isinstance(body, dict):
            raise TypeError("an action's body is an object or null")
        if not isinstance(created_at, int | float) or not isinstance(attempts, int):
            raise TypeError("an action's created_at is a number and attempts an integer")
        return cls(
            id=fields[0],
            kind=kind,
            method=fields[1],
            path=fields[2],
            body=body,
            created_at=float(created_at),
            attempts=attempts,
        )

    def to_json(self) -> str:
        """The action as one line of JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> Action:
        """Rebuild an action from :meth:`to_json`; raises ``ValueError`` or ``TypeError`` (as
        :meth:`from_dict`) on anything else."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("an action record is a JSON object")
        return cls.from_dict(data)


def new_id() -> str:
    """A fresh action id (a random uuid4 in hex): unique, and a valid ``Idempotency-Key``."""
    return uuid.uuid4().hex


def sos(
    trip_id: str,
    lat: float,
    lng: float,
    message: str | None = None,
    *,
    id: str,
    now: float,
) -> Action:
    """``POST /api/trips/{trip_id}/sos`` with ``{lat, lng, message?}``.

    Raises :class:`ValidationError` for an empty id, a position off the globe, or a message
    longer than the platform takes.
    """
    body: dict[str, Any] = {"lat": _latitude(lat, "lat"), "lng": _longitude(lng, "lng")}
    if message is not None:
        if not isinstance(message, str) or len(message) > MAX_SOS_MESSAGE:
            raise _invalid("message", f"must be text of at most {MAX_SOS_MESSAGE} characters")
        body["message"] = message
    path = f"/api/trips/{_segment(trip_id, 'trip_id')}/sos"
    return _action(ActionKind.SOS, path, body, id=id, now=now)


def trip_status(
    trip_id: str,
    status: str,
    *,
    id: str,
    now: float,
) -> Action:
    """``POST /api/trips/{trip_id}/status`` with ``{status}``.

    Raises :class:`ValidationError` for an empty id or a status the platform does not know.
    """
    if not isinstance(status, str) or status not in TRIP_STATUSES:
        raise _invalid("status", f"must be one of {', '.join(sorted(TRIP_STATUSES))}")
    path = f"/api/trips/{_segment(trip_id, 'trip_id')}/status"
    return _action(ActionKind.TRIP_STATUS, path, {"status": str(status)}, id=id, now=now)


def locations(
    trip_id: str,
    points: Sequence[Mapping[str, Any]],
    *,
    id: str,
    now: float,
) -> Action:
    """``POST /api/tracking/location`` with ``{trip_id, points}``: 1 to :data:`MAX_POINTS`
    points, each ``{lat, lng, ts, heading?, speed?}`` (``ts`` in epoch seconds, ``heading`` in
    degrees, ``speed`` in m/s).

    Raises :class:`ValidationError` for an empty id, no points or more than :data:`MAX_POINTS`
    (split them with :func:`location_batches`), or a point the platform would refuse.
    """
    if not _text(trip_id):
        raise _invalid("trip_id", "must not be empty")
    if not 1 <= len(points) <= MAX_POINTS:
        raise _invalid("points", f"must hold 1 to {MAX_POINTS} points, not {len(points)}")
    body = {"trip_id": trip_id, "points": [_point(p, i) for i, p in enumerate(points)]}
    return _action(ActionKind.LOCATIONS, "/api/tracking/location", body, id=id, now=now)


def location_batches(
    trip_id: str,
    points: Sequence[Mapping[str, Any]],
    *,
    new_id: Callable[[], str],
    now: float,
) -> list[Action]:
    """Any number of points (at least one) as consecutive :func:`locations` actions of at most
    :data:`MAX_POINTS` points each, in the points' order, each with an id from ``new_id``.

    Raises :class:`ValidationError` as :func:`locations` does (then no action is returned).
    """
    if not points:
        raise _invalid("points", "must hold at least one point")
    return [
        locations(trip_id, points[start : start + MAX_POINTS], id=new_id(), now=now)
        for start in range(0, len(points), MAX_POINTS)
    ]


def upload_complete(
    upload_id: str,
    *,
    id: str,
    now: float,
) -> Action:
    """``POST /api/uploads/{upload_id}/complete``, without a body.

    Raises :class:`ValidationError` for an empty upload id or action id.
    """
    path = f"/api/uploads/{_segment(upload_id, 'upload_id')}/complete"
    return _action(ActionKind.UPLOAD_COMPLETE, path, None, id=id, now=now)


def _action(
    kind: ActionKind, path: str, body: dict[str, Any] | None, *, id: str, now: float
) -> Action:
    # The id travels as an HTTP header, so it must be short printable ASCII without spaces.
    if not (
        isinstance(id, str)
        and 1 <= len(id) <= MAX_ID_LENGTH
        and id.isascii()
        and id.isprintable()
        and " " not in id
    ):
        raise _invalid("id", f"must be 1 to {MAX_ID_LENGTH} ASCII characters without spaces")
    return Action(id=id, kind=kind, method="POST", path=path, body=body, created_at=now)


def _point(point: Mapping[str, Any], index: int) -> dict[str, float]:
    where = f"points[{index}]"
    if not isinstance(point, Mapping):
        raise _invalid(where, "must be an object with lat, lng and ts")
    unknown = set(point) - _POINT_FIELDS
    if unknown:
        raise _invalid(where, f"has unknown fields: {', '.join(sorted(map(str, unknown)))}")
    if "ts" not in point:
        raise _invalid(f"{where}.ts", "is required")
    ts = _number(point["ts"], f"{where}.ts")
    if ts <= 0:
        raise _invalid(f"{where}.ts", "must be a positive epoch time in seconds")
    result = {
        "lat": _latitude(point.get("lat"), f"{where}.lat"),
        "lng": _longitude(point.get("lng"), f"{where}.lng"),
        "ts": ts,
    }
    if point.get("heading") is not None:
        heading = _number(point["heading"], f"{where}.heading")
        if not 0 <= heading < 360:
            raise _invalid(f"{where}.heading", "must be at least 0 and below 360 degrees")
        result["heading"] = heading
    if point.get("speed") is not None:
        speed = _number(point["speed"], f"{where}.speed")
        if not 0 <= speed <= _MAX_SPEED_MS:
            raise _invalid(f"{where}.speed", f"must be 0 to {_MAX_SPEED_MS:g} m/s")
        result["speed"] = speed
    return result


def _latitude(value: object, where: str) -> float:
    number = _number(value, where)
    if not -90 <= number <= 90:
        raise _invalid(where, "must be a latitude from -90 to 90")
    return number


def _longitude(value: object, where: str) -> float:
    number = _number(value, where)
    if not -180 <= number <= 180:
        raise _invalid(where, "must be a longitude from -180 to 180")
    return number


def _number(value: object, where: str) -> float:
    # bool is an int to Python, but True is no coordinate.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(where, "must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise _invalid(where, "must be a finite number")
    return number


def _segment(value: str, where: str) -> str:
    if not _text(value):
        raise _invalid(where, "must not be empty")
    return quote(value, safe="")


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _invalid(where: str, problem: str) -> ValidationError:
    return ValidationError(
        f"{where} {problem}",
        problem={"errors": [{"loc": where, "msg": problem}]},
    )
