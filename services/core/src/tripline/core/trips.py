"""The trip state machine and who may make which move, as pure functions: no I/O here.

A trip moves ``requested → accepted → arrived → in_progress → completed``, or to ``cancelled``
from any open status. :func:`plan_move` decides whether a move is legal and allowed and returns
the :class:`Move` that the repository applies atomically (compare-and-set on ``from_status``),
so two racing requests cannot both move the same trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tripline.common.auth import Identity, Role
from tripline.common.errors import Conflict, Forbidden


class TripStatus(StrEnum):
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    ARRIVED = "arrived"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


OPEN_STATUSES: frozenset[TripStatus] = frozenset(
    {TripStatus.REQUESTED, TripStatus.ACCEPTED, TripStatus.ARRIVED, TripStatus.IN_PROGRESS}
)

# The one forward step out of each open status; cancelling is allowed from all of them.
_NEXT: dict[TripStatus, TripStatus] = {
    TripStatus.REQUESTED: TripStatus.ACCEPTED,
    TripStatus.ACCEPTED: TripStatus.ARRIVED,
    TripStatus.ARRIVED: TripStatus.IN_PROGRESS,
    TripStatus.IN_PROGRESS: TripStatus.COMPLETED,
}


@dataclass(frozen=True)
class Move:
    """A legal, allowed move, for the repository to apply atomically.

    The repository must update the trip only while its status is still ``from_status``
    (otherwise another request won the race: answer 409), set ``to_status``, and set
    ``driver_id`` to ``assign_driver`` when it is not ``None`` (only on accept).
    """

    from_status: TripStatus
    to_status: TripStatus
    assign_driver: str | None


def is_legal(status: TripStatus, target: TripStatus) -> bool:
    """Whether the graph has an edge from ``status`` to ``target``, whoever asks."""
    if status not in OPEN_STATUSES:
        return False
    return target is TripStatus.CANCELLED or _NEXT[status] is target


def is_party(actor: Identity, *, rider_id: str, driver_id: str | None) -> bool:
    """Whether ``actor`` may read the trip: its rider, its driver, or an admin."""
    if actor.role is Role.ADMIN:
        return True
    return actor.user_id == rider_id or (driver_id is not None and actor.user_id == driver_id)


def plan_move(
    *,
    status: TripStatus,
    target: TripStatus,
    actor: Identity,
    rider_id: str,
    driver_id: str | None,
) -> Move:
    """Return the :class:`Move` that takes a trip from ``status`` to ``target`` for ``actor``.

    Raises :class:`Conflict` (409) when the move is not in the graph, or when accepting a trip
    that already has a driver; then :class:`Forbidden` (403) when ``actor`` may not make it:
    only a driver other than the trip's rider accepts, only the trip's driver moves it on, and
    only the trip's rider or driver cancels it. Admins make no moves.

    Legality is checked first on purpose: the contract wants outsiders to learn nothing about a
    trip, and the caller already answers them 404 before planning, so whoever reaches this is
    a party and gains nothing from a 403 that hides a 409.
    """
    if not is_legal(status, target):
        raise Conflict(
            f"a trip that is {status.value} cannot move to {target.value}",
            extra={"current_status": status.value, "requested_status": target.value},
        )
    if target is TripStatus.ACCEPTED:
        return _plan_accept(actor, rider_id=rider_id, driver_id=driver_id)
    is_driver = driver_id is not None and actor.user_id == driver_id
    if target is TripStatus.CANCELLED:
        if not (is_driver or actor.user_id == rider_id):
            raise Forbidden("only the trip's rider or driver may cancel it")
    elif not is_driver:
        raise Forbidden(f"only the trip's driver may move it to {target.value}")
    return Move(from_status=status, to_status=target, assign_driver=None)


def _plan_accept(actor: Identity, *, rider_id: str, driver_id: str | None) -> Move:
    if driver_id is not None:
        raise Conflict(
            "the trip already has a driver",
            extra={
                "current_status": TripStatus.REQUESTED.value,
                "requested_status": TripStatus.ACCEPTED.value,
            },
        )
    if actor.role is not Role.DRIVER:
        raise Forbidden("only a driver may accept a trip")
    if actor.user_id == rider_id:
        raise Forbidden("a driver may not accept a trip they requested")
    return Move(
        from_status=TripStatus.REQUESTED,
        to_status=TripStatus.ACCEPTED,
        assign_driver=actor.user_id,
    )
