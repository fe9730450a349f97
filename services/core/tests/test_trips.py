from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tripline.common.auth import Identity, Role
from tripline.common.errors import Conflict, Forbidden
from tripline.core.trips import OPEN_STATUSES, Move, TripStatus, is_party, plan_move

REQUESTED = TripStatus.REQUESTED
ACCEPTED = TripStatus.ACCEPTED
ARRIVED = TripStatus.ARRIVED
IN_PROGRESS = TripStatus.IN_PROGRESS
COMPLETED = TripStatus.COMPLETED
CANCELLED = TripStatus.CANCELLED

RIDER_ID = "r1"
DRIVER_ID = "d1"

ACTORS: dict[str, Identity] = {
    "its rider": Identity(RIDER_ID, Role.RIDER),
    "another rider": Identity("r2", Role.RIDER),
    "its driver": Identity(DRIVER_ID, Role.DRIVER),
    "another driver": Identity("d2", Role.DRIVER),
    "admin": Identity("a1", Role.ADMIN),
}

# Written out by hand, independently of the module: (from, to, who may make the move).
ALLOWED: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("requested", "accepted", "any driver"),
        ("accepted", "arrived", "the trip's driver"),
        ("arrived", "in_progress", "the trip's driver"),
        ("in_progress", "completed", "the trip's driver"),
        ("requested", "cancelled", "the trip's rider"),
        ("requested", "cancelled", "the trip's driver"),
        ("accepted", "cancelled", "the trip's rider"),
        ("accepted", "cancelled", "the trip's driver"),
        ("arrived", "cancelled", "the trip's rider"),
        ("arrived", "cancelled", "the trip's driver"),
        ("in_progress", "cancelled", "the trip's rider"),
        ("in_progress", "cancelled", "the trip's driver"),
    }
)
EDGES = frozenset((source, target) for source, target, _ in ALLOWED)


def plan(
    status: TripStatus,
    target: TripStatus,
    actor: str,
    *,
    driver_id: str | None = DRIVER_ID,
) -> Move:
    return plan_move(
        status=status, target=target, actor=ACTORS[actor], rider_id=RIDER_ID, driver_id=driver_id
    )


def test_a_driver_accepts_a_requested_trip_and_becomes_its_driver() -> None:
    move = plan(REQUESTED, ACCEPTED, "another driver", driver_id=None)

    assert move == Move(from_status=REQUESTED, to_status=ACCEPTED, assign_driver="d2")


@pytest.mark.parametrize("actor", ["its rider", "another rider", "admin"])
def test_only_a_driver_accepts(actor: str) -> None:
    with pytest.raises(Forbidden):
        plan(REQUESTED, ACCEPTED, actor, driver_id=None)


def test_a_driver_cannot_accept_a_trip_they_requested() -> None:
    with pytest.raises(Forbidden):
        plan_move(
            status=REQUESTED,
            target=ACCEPTED,
            actor=Identity("d1", Role.DRIVER),
            rider_id="d1",
            driver_id=None,
        )


def test_a_second_accept_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        plan(ACCEPTED, ACCEPTED, "another driver")


def test_a_requested_trip_that_somehow_has_a_driver_cannot_be_accepted_again() -> None:
    with pytest.raises(Conflict, match="already has a driver"):
        plan(REQUESTED, ACCEPTED, "another driver", driver_id=DRIVER_ID)


@pytest.mark.parametrize(
    ("status", "target"), [(ACCEPTED, ARRIVED), (ARRIVED, IN_PROGRESS), (IN_PROGRESS, COMPLETED)]
)
def test_the_trips_driver_moves_it_on(status: TripStatus, target: TripStatus) -> None:
    assert plan(status, target, "its driver") == Move(status, target, assign_driver=None)


@pytest.mark.parametrize(
    ("status", "target"), [(ACCEPTED, ARRIVED), (ARRIVED, IN_PROGRESS), (IN_PROGRESS, COMPLETED)]
)
@pytest.mark.parametrize("actor", ["its rider", "another rider", "another driver", "admin"])
def test_nobody_but_the_trips_driver_moves_it_on(
    status: TripStatus, target: TripStatus, actor: str
) -> None:
    with pytest.raises(Forbidden):
        plan(status, target, actor)


@pytest.mark.parametrize("status", sorted(OPEN_STATUSES))
@pytest.mark.parametrize("actor", ["its rider", "its driver"])
def test_the_trips_rider_or_driver_cancels_an_open_trip(status: TripStatus, actor: str) -> None:
    assert plan(status, CANCELLED, actor) == Move(status, CANCELLED, assign_driver=None)


@pytest.mark.parametrize("status", sorted(OPEN_STATUSES))
@pytest.mark.parametrize("actor", ["another rider", "another driver", "admin"])
def test_nobody_else_cancels(status: TripStatus, actor: str) -> None:
    with pytest.raises(Forbidden):
        plan(status, CANCELLED, actor)


def test_a_driver_cannot_cancel_a_trip_before_accepting_it() -> None:
    with pytest.raises(Forbidden):
        plan(REQUESTED, CANCELLED, "its driver", driver_id=None)


@pytest.mark.parametrize(
    ("status", "target"),
    [
        (REQUESTED, REQUESTED),
        (ARRIVED, ARRIVED),
        (REQUESTED, ARRIVED),
        (REQUESTED, COMPLETED),
        (ARRIVED, ACCEPTED),
        (COMPLETED, IN_PROGRESS),
        (COMPLETED, CANCELLED),
        (CANCELLED, REQUESTED),
        (CANCELLED, CANCELLED),
    ],
)
def test_moves_outside_the_graph_are_conflicts_naming_both_statuses(
    status: TripStatus, target: TripStatus
) -> None:
    with pytest.raises(Conflict) as caught:
        plan(status, target, "its driver")

    assert status.value in caught.value.detail
    assert target.value in caught.value.detail
    assert caught.value.extra == {"current_status": status.value, "requested_status": target.value}


def test_an_illegal_move_is_a_conflict_even_for_an_outsider() -> None:
    with pytest.raises(Conflict):
        plan(COMPLETED, CANCELLED, "another rider")


@pytest.mark.parametrize(
    ("actor", "driver_id", "expected"),
    [
        ("its rider", None, True),
        ("its driver", DRIVER_ID, True),
        ("its driver", None, False),
        ("another rider", DRIVER_ID, False),
        ("another driver", DRIVER_ID, False),
        ("admin", None, True),
    ],
)
def test_is_party(actor: str, driver_id: str | None, expected: bool) -> None:
    assert is_party(ACTORS[actor], rider_id=RIDER_ID, driver_id=driver_id) is expected


def expected_outcome(
    status: TripStatus, target: TripStatus, actor: str, driver_id: str | None
) -> Move | type[Exception]:
    """The independent model: the outcome the table above implies."""
    if (status.value, target.value) not in EDGES:
        return Conflict
    if target is ACCEPTED and driver_id is not None:
        return Conflict
    identity = ACTORS[actor]
    roles = set()
    if identity.user_id == RIDER_ID:
        roles.add("the trip's rider")
    if identity.role is Role.DRIVER:
        roles.add("any driver")
    if driver_id is not None and identity.user_id == driver_id:
        roles.add("the trip's driver")
    if not any((status.value, target.value, role) in ALLOWED for role in roles):
        return Forbidden
    assign = identity.user_id if target is ACCEPTED else None
    return Move(from_status=status, to_status=target, assign_driver=assign)


@given(
    status=st.sampled_from(TripStatus),
    target=st.sampled_from(TripStatus),
    actor=st.sampled_from(sorted(ACTORS)),
    driver_id=st.sampled_from([None, DRIVER_ID]),
)
def test_plan_move_agrees_with_the_table(
    status: TripStatus, target: TripStatus, actor: str, driver_id: str | None
) -> None:
    expected = expected_outcome(status, target, actor, driver_id)
    try:
        outcome: Move | type[Exception] = plan(status, target, actor, driver_id=driver_id)
    except (Conflict, Forbidden) as exc:
        outcome = type(exc)

    assert outcome == expected


def test_the_table_allows_some_move_from_every_open_status() -> None:
    # Guards the property test against a table that refuses everything.
    assert {TripStatus(source) for source, _ in EDGES} == OPEN_STATUSES


class TripLifecycle(RuleBasedStateMachine):
    """Random moves by random actors from ``requested``, applied the way the repository does."""

    @initialize()
    def start(self) -> None:
        self.status = REQUESTED
        self.driver_id: str | None = None
        self.assignments = 0
        self.terminal_reached = False

    # Hypothesis reserves ``target`` for bundles, hence ``to``.
    @rule(to=st.sampled_from(TripStatus), actor=st.sampled_from(sorted(ACTORS)))
    def move(self, to: TripStatus, actor: str) -> None:
        try:
            move = plan(self.status, to, actor, driver_id=self.driver_id)
        except (Conflict, Forbidden):
            return
        assert not self.terminal_reached
        assert move.from_status is self.status
        assert (self.status.value, move.to_status.value) in EDGES
        if move.assign_driver is not None:
            self.assignments += 1
            self.driver_id = move.assign_driver
        self.status = move.to_status
        self.terminal_reached = self.status not in OPEN_STATUSES

    @precondition(lambda self: self.status in {COMPLETED, CANCELLED})
    @rule(to=st.sampled_from(TripStatus), actor=st.sampled_from(sorted(ACTORS)))
    def terminal_statuses_refuse_every_move(self, to: TripStatus, actor: str) -> None:
        with pytest.raises(Conflict):
            plan(self.status, to, actor, driver_id=self.driver_id)

    @invariant()
    def driver_is_assigned_exactly_once_when_accepted(self) -> None:
        assert self.assignments <= 1
        if self.status in {ACCEPTED, ARRIVED, IN_PROGRESS, COMPLETED}:
            assert self.assignments == 1
            assert self.driver_id is not None
        if self.status is REQUESTED:
            assert self.driver_id is None


TestTripLifecycle = TripLifecycle.TestCase
