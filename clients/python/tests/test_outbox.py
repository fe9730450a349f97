"""The offline queue against a fake platform that deduplicates by action id, as the real one does
by Idempotency-Key: whatever the network and restarts do, every action is applied once, in the
order it was submitted, and its outcome reaches whoever is listening."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tripline_client import actions
from tripline_client.actions import Action, ActionKind
from tripline_client.errors import (
    ActionExpired,
    Conflict,
    InternalError,
    NetworkError,
    TriplineError,
    Unauthorized,
    ValidationError,
)
from tripline_client.outbox import Outbox, StopReason
from tripline_client.outbox_store import RETENTION_S, OutboxStore, Outcome
from tripline_client.storage import open_database

Mode = Literal["up", "down", "lossy", "unauthorized"]


class FakeServer:
    """Applies each action id once. ``down`` fails before applying, ``lossy`` applies and then
    loses the answer, ``unauthorized`` refuses the token; ``refuse`` maps ids to a refusal."""

    def __init__(self) -> None:
        self.mode: Mode = "up"
        self.applied: list[str] = []
        self.answers: dict[str, dict[str, Any]] = {}
        self.refuse: dict[str, TriplineError] = {}
        self.sends = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def send(self, action: Action) -> dict[str, Any]:
        self.sends += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if self.mode == "down":
                raise NetworkError("connection refused")
            if self.mode == "unauthorized":
                raise Unauthorized("token expired", status=401)
            if action.id in self.refuse:
                raise self.refuse[action.id]
            if action.id not in self.answers:
                self.applied.append(action.id)
                self.answers[action.id] = {"id": action.id, "status": "accepted"}
            if self.mode == "lossy":
                raise NetworkError("connection reset before the answer")
            return self.answers[action.id]
        finally:
            self.in_flight -= 1


START = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def make(kind: ActionKind, action_id: str, now: float = START) -> Action:
    match kind:
        case ActionKind.SOS:
            return actions.sos("trip-1", 52.5, 13.4, "help", id=action_id, now=now)
        case ActionKind.TRIP_STATUS:
            return actions.trip_status("trip-1", "accepted", id=action_id, now=now)
        case ActionKind.LOCATIONS:
            point = {"lat": 52.5, "lng": 13.4, "ts": 1.0}
            return actions.locations("trip-1", [point], id=action_id, now=now)
        case ActionKind.UPLOAD_COMPLETE:
            return actions.upload_complete("up-1", id=action_id, now=now)


def sos(action_id: str) -> Action:
    return make(ActionKind.SOS, action_id)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(store: OutboxStore, server: FakeServer, clock: Clock) -> Outbox:
    return Outbox(store, server.send, clock=clock)


async def test_an_action_is_on_disk_before_it_is_sent(outbox: Outbox, server: FakeServer) -> None:
    future = outbox.submit(sos("a"))
    assert outbox.pending() == [sos("a")]
    assert server.sends == 0
    assert not future.done()


async def test_drain_sends_every_kind_in_order_and_reports(
    outbox: Outbox, server: FakeServer, clock: Clock
) -> None:
    reported: list[Outcome] = []
    outbox.on_outcome(reported.append)
    submitted = [make(kind, f"a{n}") for n, kind in enumerate(ActionKind)]
    futures = [outbox.submit(action) for action in submitted]

    stop = await outbox.drain()

    assert stop.kind is StopReason.EMPTY
    assert stop.error is None
    assert server.applied == ["a0", "a1", "a2", "a3"]
    assert outbox.pending() == []
    for action, future in zip(submitted, futures, strict=True):
        outcome = future.result()
        assert outcome == Outcome(action, True, server.answers[action.id], None, clock.now)
        assert outbox.outcome(action.id) == outcome
    assert [outcome.action.id for outcome in reported] == ["a0", "a1", "a2", "a3"]


async def test_a_transient_failure_stops_and_keeps_the_head(
    outbox: Outbox, server: FakeServer
) -> None:
    first, second = outbox.submit(sos("a")), outbox.submit(sos("b"))
    server.mode = "down"

    stop = await outbox.drain()

    assert stop.kind is StopReason.TRANSIENT
    assert isinstance(stop.error, NetworkError)
    assert [(a.id, a.attempts) for a in outbox.pending()] == [("a", 1), ("b", 0)]
    assert server.sends == 1
    assert not first.done()
    server.mode = "up"
    assert (await outbox.drain()).kind is StopReason.EMPTY
    assert first.result().applied
    assert second.result().applied
    assert first.result().action.attempts == 1


async def test_an_action_whose_answer_was_lost_is_applied_once(
    outbox: Outbox, server: FakeServer
) -> None:
    future = outbox.submit(sos("a"))
    server.mode = "lossy"
    assert (await outbox.drain()).kind is StopReason.TRANSIENT
    assert server.applied == ["a"]

    server.mode = "up"
    assert (await outbox.drain()).kind is StopReason.EMPTY

    assert server.applied == ["a"]
    assert server.sends == 2
    assert future.result().result == server.answers["a"]


async def test_a_refused_action_fails_and_does_not_block_the_next(
    outbox: Outbox, server: FakeServer
) -> None:
    server.refuse["a"] = Conflict("the trip has moved on", status=409)
    refused, behind = outbox.submit(make(ActionKind.TRIP_STATUS, "a")), outbox.submit(sos("b"))

    assert (await outbox.drain()).kind is StopReason.EMPTY

    outcome = refused.result()
    assert not outcome.applied
    assert outcome.result is None
    assert outcome.error is server.refuse["a"]
    assert behind.result().applied
    assert server.applied == ["b"]


async def test_unauthorized_keeps_the_action_without_counting(
    outbox: Outbox, server: FakeServer
) -> None:
    future = outbox.submit(sos("a"))
    server.mode = "unauthorized"
    for _ in range(3):
        stop = await outbox.drain()
        assert stop.kind is StopReason.UNAUTHORIZED
        assert isinstance(stop.error, Unauthorized)
    assert [(a.id, a.attempts) for a in outbox.pending()] == [("a", 0)]
    assert not future.done()

    server.mode = "up"
    assert (await outbox.drain()).kind is StopReason.EMPTY
    assert future.result().applied


async def test_an_action_the_platform_fails_with_500s_is_given_up_after_max_attempts(
    store: OutboxStore, server: FakeServer, clock: Clock
) -> None:
    outbox = Outbox(store, server.send, clock=clock, max_attempts=3)
    future = outbox.submit(sos("a"))
    second = outbox.submit(sos("b"))
    server.refuse["a"] = InternalError("boom", status=500)

    assert (await outbox.drain()).kind is StopReason.TRANSIENT
    assert (await outbox.drain()).kind is StopReason.TRANSIENT
    assert not future.done()
    assert (await outbox.drain()).kind is StopReason.EMPTY

    outcome = future.result()
    assert not outcome.applied
    assert isinstance(outcome.error, InternalError)
    assert outcome.action.attempts == 3
    # The next action went out in the same drain.
    assert second.result().applied


async def test_an_outage_never_gives_an_action_up_before_its_age(
    store: OutboxStore, server: FakeServer, clock: Clock
) -> None:
    outbox = Outbox(store, server.send, clock=clock, max_attempts=3, max_age_s=3600)
    future = outbox.submit(sos("a"))
    server.mode = "down"
    for _ in range(20):
        clock.now += 60
        assert (await outbox.drain()).kind is StopReason.TRANSIENT
    assert not future.done()

    clock.now = START + 3600
    assert (await outbox.drain()).kind is StopReason.EMPTY
    outcome = future.result()
    assert not outcome.applied
    assert isinstance(outcome.error, ActionExpired)
    assert outcome.error.user_message == ActionExpired.default_message
    assert isinstance(outcome.error.__cause__, NetworkError)
    assert outcome.action.attempts == 21


async def test_max_attempts_is_at_least_one(store: OutboxStore, server: FakeServer) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        Outbox(store, server.send, clock=Clock(), max_attempts=0)


async def test_a_bug_in_the_sender_propagates_and_keeps_the_action(
    store: OutboxStore, server: FakeServer, clock: Clock
) -> None:
    async def broken(action: Action) -> dict[str, Any]:
        raise RuntimeError("bug")

    outbox = Outbox(store, broken, clock=clock)
    outbox.submit(sos("a"))
    with pytest.raises(RuntimeError, match="bug"):
        await outbox.drain()
    assert [(a.id, a.attempts) for a in outbox.pending()] == [("a", 0)]

    fixed = Outbox(store, server.send, clock=clock)
    assert (await fixed.drain()).kind is StopReason.EMPTY
    assert server.applied == ["a"]


async def test_a_raising_callback_is_logged_and_the_queue_goes_on(
    outbox: Outbox, server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(outcome: Outcome) -> None:
        raise RuntimeError("callback bug")

    reported: list[str] = []
    outbox.on_outcome(broken)
    outbox.on_outcome(lambda outcome: reported.append(outcome.action.id))
    outbox.submit(sos("a"))
    outbox.submit(sos("b"))

    with caplog.at_level(logging.ERROR, logger="tripline_client.outbox"):
        assert (await outbox.drain()).kind is StopReason.EMPTY

    assert reported == ["a", "b"]
    assert server.applied == ["a", "b"]
    failures = [record for record in caplog.records if record.exc_info]
    assert len(failures) == 2


async def test_an_unregistered_callback_is_not_called(outbox: Outbox) -> None:
    reported: list[Outcome] = []
    unregister = outbox.on_outcome(reported.append)
    unregister()
    unregister()
    outbox.submit(sos("a"))
    await outbox.drain()
    assert reported == []


async def test_a_submit_during_a_drain_is_sent_by_that_drain(
    store: OutboxStore, server: FakeServer, clock: Clock
) -> None:
    async def send(action: Action) -> dict[str, Any]:
        if action.id == "a":
            queue.submit(sos("b"))
        return await server.send(action)

    queue = Outbox(store, send, clock=clock)
    queue.submit(sos("a"))
    assert (await queue.drain()).kind is StopReason.EMPTY
    assert server.applied == ["a", "b"]


async def test_two_drains_never_interleave(outbox: Outbox, server: FakeServer) -> None:
    futures = [outbox.submit(sos(f"a{n}")) for n in range(5)]
    stops = await asyncio.gather(*(outbox.drain() for _ in range(3)))
    assert {stop.kind for stop in stops} == {StopReason.EMPTY}
    assert server.most_in_flight == 1
    assert server.applied == [f"a{n}" for n in range(5)]
    assert server.sends == 5
    assert all(future.result().applied for future in futures)


async def test_resubmitting_a_finished_action_gives_its_outcome(
    outbox: Outbox, server: FakeServer
) -> None:
    first = outbox.submit(sos("a"))
    assert outbox.submit(sos("a")) is not first
    await outbox.drain()
    again = outbox.submit(sos("a"))
    assert again.done()
    assert again.result() == first.result()
    assert server.sends == 1
    assert outbox.pending() == []


async def test_outcomes_survive_a_restart(tmp_path: Path, server: FakeServer, clock: Clock) -> None:
    refusal = ValidationError(
        "status: not a trip status",
        status=422,
        problem={"type": "https://tripline.dev/problems/validation-error", "errors": [{"loc": 1}]},
        user_message="Check the details.",
    )
    server.refuse["bad"] = refusal
    connection = open_database(tmp_path)
    old = Outbox(OutboxStore(connection), server.send, clock=clock)
    old.submit(sos("good"))
    old.submit(sos("bad"))
    await old.drain()
    connection.close()

    connection = open_database(tmp_path)
    new = Outbox(OutboxStore(connection), server.send, clock=clock)
    good, bad = new.outcome("good"), new.outcome("bad")
    connection.close()

    assert good == Outcome(sos("good"), True, server.answers["good"], None, clock.now)
    assert bad is not None
    assert type(bad.error) is ValidationError
    assert bad.error.errors == [{"loc": 1}]
    assert vars(bad.error) == vars(refusal)


async def test_callbacks_after_a_restart_hear_of_actions_submitted_before(
    tmp_path: Path, server: FakeServer, clock: Clock
) -> None:
    server.mode = "down"
    connection = open_database(tmp_path)
    old = Outbox(OutboxStore(connection), server.send, clock=clock)
    old.submit(sos("a"))
    old.submit(make(ActionKind.TRIP_STATUS, "b"))
    assert (await old.drain()).kind is StopReason.TRANSIENT
    connection.close()

    connection = open_database(tmp_path)
    new = Outbox(OutboxStore(connection), server.send, clock=clock)
    reported: list[Outcome] = []
    new.on_outcome(reported.append)
    awaited = new.submit(new.pending()[0])
    server.mode = "up"
    assert (await new.drain()).kind is StopReason.EMPTY
    connection.close()

    assert [(o.action.id, o.applied) for o in reported] == [("a", True), ("b", True)]
    assert awaited.result() == reported[0]
    assert server.applied == ["a", "b"]


async def test_old_outcomes_are_purged(
    store: OutboxStore, outbox: Outbox, server: FakeServer, clock: Clock
) -> None:
    outbox.submit(sos("a"))
    await outbox.drain()
    finished_at = clock.now

    assert store.purge_expired(finished_at + RETENTION_S) == 0
    assert outbox.outcome("a") is not None
    clock.now = finished_at + RETENTION_S + 1
    outbox.submit(sos("b"))
    await outbox.drain()

    assert outbox.outcome("a") is None
    assert outbox.outcome("b") is not None


class OutboxUnderWeather(RuleBasedStateMachine):
    """Submits, outages, drains and restarts in any order; the network then comes back."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = Path(tempfile.mkdtemp())
        self.server = FakeServer()
        self.clock = Clock()
        self.submitted: list[str] = []
        self._open()

    def _open(self) -> None:
        self.connection = open_database(self.directory)
        # Far more attempts than a run has drains: giving up is tested on its own.
        self.outbox = Outbox(
            OutboxStore(self.connection), self.server.send, clock=self.clock, max_attempts=10_000
        )
        self.futures: dict[str, asyncio.Future[Outcome]] = {}
        self.reported: list[Outcome] = []
        self.outbox.on_outcome(self.reported.append)

    async def _submit(self, kind: ActionKind) -> None:
        action = make(kind, f"a{len(self.submitted)}", now=self.clock())
        self.futures[action.id] = self.outbox.submit(action)
        self.submitted.append(action.id)

    @rule(kind=st.sampled_from(ActionKind))
    def submit(self, kind: ActionKind) -> None:
        self.loop.run_until_complete(self._submit(kind))

    @rule(mode=st.sampled_from(["up", "down", "lossy", "unauthorized"]))
    def network(self, mode: Mode) -> None:
        self.server.mode = mode

    @rule()
    def drain(self) -> None:
        stop = self.loop.run_until_complete(self.outbox.drain())
        if self.server.mode == "up":
            assert stop.kind is StopReason.EMPTY

    @rule(kind=st.sampled_from(ActionKind))
    def submit_while_draining(self, kind: ActionKind) -> None:
        async def both() -> None:
            draining = asyncio.ensure_future(self.outbox.drain())
            await asyncio.sleep(0)
            await self._submit(kind)
            await draining

        self.loop.run_until_complete(both())

    @rule()
    def restart(self) -> None:
        self.connection.close()
        self._open()

    @invariant()
    def applied_once_in_submission_order(self) -> None:
        assert self.server.applied == self.submitted[: len(self.server.applied)]

    @invariant()
    def only_applied_actions_finish(self) -> None:
        assert all(outcome.applied for outcome in self.reported)

    def teardown(self) -> None:
        try:
            self.server.mode = "up"
            stop = self.loop.run_until_complete(self.outbox.drain())
            assert stop.kind is StopReason.EMPTY
            assert self.server.applied == self.submitted
            assert self.outbox.pending() == []
            for action_id in self.submitted:
                outcome = self.outbox.outcome(action_id)
                assert outcome is not None
                assert outcome.applied
            for future in self.futures.values():
                assert future.result().applied
        finally:
            self.connection.close()
            self.loop.close()
            shutil.rmtree(self.directory)


OutboxUnderWeather.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None
)
TestOutboxUnderWeather = OutboxUnderWeather.TestCase
