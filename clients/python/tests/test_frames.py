import json
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tripline_client.errors import (
    Forbidden,
    InternalError,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    ValidationError,
)
from tripline_client.frames import (
    Decision,
    MalformedFrame,
    Reaction,
    Resume,
    TripEvent,
    Verdict,
    close_reaction,
    location_of,
    parse_frame,
)


def text(**frame: Any) -> str:
    return json.dumps(frame)


def test_a_frame_keeps_its_fields_apart_from_type_and_seq() -> None:
    event = parse_frame(text(seq=4, type="location", lat=52.5, lng=13.4, ts=10.0, trip_id="t"))
    assert event == TripEvent("location", 4, {"lat": 52.5, "lng": 13.4, "ts": 10.0, "trip_id": "t"})
    assert parse_frame(b'{"type": "pong"}') == TripEvent("pong", None, {})


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        b"\xff\xfe\x00garbage",
        "[1, 2]",
        '"location"',
        text(seq=3),
        text(type=7, seq=3),
        text(type="status", seq="3"),
        text(type="status", seq=True),
        text(type="status", seq=-1),
        text(type="status", seq=1.5),
        text(type="snapshot", location=None),
        "[" * 100_000,
    ],
)
def test_anything_but_a_protocol_frame_is_malformed(message: str | bytes) -> None:
    with pytest.raises(MalformedFrame):
        parse_frame(message)
    resume = Resume(last_seq=5)
    assert resume.accept(message) == Decision(Verdict.MALFORMED)
    assert resume.malformed == 1
    assert resume.last_seq == 5


def test_events_are_delivered_in_order_and_replays_dropped() -> None:
    resume = Resume()
    verdicts = [
        resume.accept(message).verdict
        for message in (
            text(type="snapshot", seq=3, location=None, status="accepted"),
            text(type="location", seq=4),
            text(type="location", seq=4),
            text(type="status", seq=2),
            text(type="status", seq=5),
        )
    ]
    assert verdicts == [
        Verdict.DELIVER,
        Verdict.DELIVER,
        Verdict.DUPLICATE,
        Verdict.DUPLICATE,
        Verdict.DELIVER,
    ]
    assert resume.last_seq == 5
    assert resume.since() == 5
    assert resume.duplicates == 2


def test_a_first_connection_has_no_since() -> None:
    assert Resume().since() is None


def test_replies_are_not_events() -> None:
    resume = Resume(last_seq=2)
    for reply in ("pong", "ack", "error"):
        assert resume.accept(text(type=reply, seq=9)).verdict is Verdict.REPLY
    assert resume.last_seq == 2


def test_a_hole_in_the_numbers_asks_for_a_resync_and_delivers_nothing() -> None:
    resume = Resume(last_seq=4)
    decision = resume.accept(text(type="status", seq=7, status="started"))
    assert decision.verdict is Verdict.GAP
    assert resume.last_seq == 4
    assert resume.since() == 4
    assert resume.holes == 1


def test_without_resync_a_hole_is_delivered_across_and_counted() -> None:
    resume = Resume(last_seq=4, resync_on_gap=False)
    assert resume.accept(text(type="status", seq=7)).verdict is Verdict.DELIVER
    assert resume.last_seq == 7
    assert resume.holes == 1


def test_the_first_event_without_a_snapshot_sets_the_start() -> None:
    resume = Resume()
    assert resume.accept(text(type="status", seq=40)).verdict is Verdict.DELIVER
    assert resume.last_seq == 40


def test_an_unnumbered_event_is_delivered_without_moving_the_count() -> None:
    resume = Resume(last_seq=3)
    assert resume.accept(text(type="notice")).verdict is Verdict.DELIVER
    assert resume.last_seq == 3


def test_a_snapshot_that_did_not_recover_moves_the_start_forward() -> None:
    resume = Resume(last_seq=3)
    decision = resume.accept(text(type="snapshot", seq=300, location=None, recovered=False))
    assert decision.verdict is Verdict.DELIVER
    assert resume.last_seq == 300


def test_a_restarted_numbering_is_taken_from_its_snapshot() -> None:
    resume = Resume(last_seq=500)
    decision = resume.accept(text(type="snapshot", seq=2, location=None, recovered=False))
    assert decision.verdict is Verdict.DELIVER
    assert resume.last_seq == 2
    assert resume.accept(text(type="status", seq=3)).verdict is Verdict.DELIVER


def test_a_stale_snapshot_is_a_duplicate() -> None:
    resume = Resume(last_seq=5)
    assert resume.accept(text(type="snapshot", seq=5, location=None)).verdict is Verdict.DUPLICATE
    assert resume.accept(text(type="snapshot", seq=4, location=None)).verdict is Verdict.DUPLICATE
    assert resume.last_seq == 5


def test_the_location_a_frame_implies() -> None:
    located = parse_frame(text(type="location", seq=8, lat=1.0, lng=2.0, ts=3.0, trip_id="t"))
    assert location_of(located) == {"lat": 1.0, "lng": 2.0, "ts": 3.0, "seq": 8}
    latest = {"lat": 1.0, "lng": 2.0, "heading": None, "speed": None, "ts": 3.0, "seq": 6}
    snapshot = parse_frame(text(type="snapshot", seq=9, location=latest, status="started"))
    assert location_of(snapshot) == latest
    assert location_of(parse_frame(text(type="snapshot", seq=9, location=None))) is None
    assert location_of(parse_frame(text(type="status", seq=9, status="started"))) is None


@pytest.mark.parametrize(
    ("code", "reaction"),
    [
        (1000, Reaction.BACKOFF),
        (1001, Reaction.BACKOFF),
        (None, Reaction.BACKOFF),
        (1011, Reaction.BACKOFF),
        (1012, Reaction.NOW),
        (1013, Reaction.BACKOFF),
        (3000, Reaction.BACKOFF),
    ],
)
def test_what_a_close_code_asks(code: int | None, reaction: Reaction) -> None:
    assert close_reaction(code).reaction is reaction
    assert close_reaction(code).error is None


@pytest.mark.parametrize(
    ("code", "error", "reaction"),
    [
        (4401, Unauthorized, Reaction.STOP),
        (4403, Forbidden, Reaction.STOP),
        (4404, NotFound, Reaction.STOP),
        (4422, ValidationError, Reaction.STOP),
        (4429, RateLimited, Reaction.BACKOFF),
        (4503, ServiceUnavailable, Reaction.BACKOFF),
        (4500, InternalError, Reaction.BACKOFF),
    ],
)
def test_a_refusal_after_the_upgrade_carries_its_error(
    code: int, error: type[Exception], reaction: Reaction
) -> None:
    closing = close_reaction(code, "no trip has that id")
    assert closing.reaction is reaction
    assert type(closing.error) is error
    assert closing.error is not None
    assert closing.error.detail == "no trip has that id"
    assert closing.error.status == code - 4000


# --- the property: a server that replays, repeats and loses history ----------------------------


@dataclass
class Server:
    """The tracking server's side of the protocol, reduced to its numbering."""

    events: list[dict[str, Any]] = field(default_factory=list)
    kept_from: int = 1
    """The oldest seq the history still holds."""

    @property
    def current(self) -> int:
        return len(self.events)

    def publish(self, kind: str) -> str:
        self.events.append({"seq": self.current + 1, "type": kind, "n": self.current + 1})
        return json.dumps(self.events[-1])

    def start(self, since: int | None) -> list[str]:
        if since is None:
            return [text(type="snapshot", seq=self.current, location=None)]
        if since + 1 < self.kept_from and since < self.current:
            return [text(type="snapshot", seq=self.current, location=None, recovered=False)]
        return [json.dumps(event) for event in self.events[since:]]


kinds = st.sampled_from(["location", "status", "sos"])
network = [
    st.tuples(st.just("publish"), kinds),
    st.tuples(st.just("receive"), st.integers(0, 3)),
    st.tuples(st.just("lose"), st.integers(0, 3)),
    st.tuples(st.just("repeat"), st.integers(0, 50)),
    st.tuples(st.just("reconnect"), st.integers(0, 4)),
    st.tuples(st.just("noise"), st.sampled_from(['{"type": "pong"}', "garbage", "[]"])),
]
forgetting = st.tuples(st.just("forget"), st.integers(0, 10))


def play(script: list[tuple[str, Any]]) -> tuple[Server, Resume, list[TripEvent]]:
    """Run ``script`` against a client that reconnects with since on every gap, then let it
    reconnect once more and read everything: what did it deliver?"""
    server = Server()
    resume = Resume()
    stream: list[str] = server.start(None)
    delivered: list[TripEvent] = []

    def receive(message: str) -> None:
        decision = resume.accept(message)
        if decision.verdict is Verdict.DELIVER:
            assert decision.event is not None
            delivered.append(decision.event)
        elif decision.verdict is Verdict.GAP:
            stream[:] = server.start(resume.since())

    for step, arg in script:
        if step == "publish":
            stream.append(server.publish(arg))
        elif step == "receive":
            for _ in range(arg):
                if stream:
                    receive(stream.pop(0))
        elif step == "lose" and arg < len(stream):
            del stream[arg]
        elif step == "repeat" and server.events and resume.since() is not None:
            # An event seen again, as an overlapping replay or a resent frame would show it (a
            # connection's snapshot always comes first, so never before one).
            stream.append(json.dumps(server.events[arg % server.current]))
        elif step == "reconnect":
            # An overlapping replay (a since older than the last seen) only adds duplicates.
            since = resume.since()
            stream[:] = server.start(None if since is None else max(0, since - arg))
        elif step == "forget":
            server.kept_from = min(server.current + 1, server.kept_from + arg)
        elif step == "noise":
            stream.append(arg)
    stream[:] = server.start(resume.since())
    while stream:
        receive(stream.pop(0))
    return server, resume, delivered


def check_increasing(server: Server, resume: Resume, delivered: list[TripEvent]) -> list[int]:
    numbers = [event.seq for event in delivered if event.seq is not None]
    assert len(numbers) == len(delivered)
    assert all(a < b for a, b in pairwise(numbers))
    assert resume.last_seq == server.current
    for event in delivered:
        if event.type != "snapshot":
            assert event.data["n"] == event.seq
    return numbers


@settings(max_examples=150)
@given(script=st.lists(st.one_of(network), min_size=20, max_size=80))
def test_delivered_events_are_increasing_and_contiguous(script: list[tuple[str, Any]]) -> None:
    numbers = check_increasing(*play(script))
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


@settings(max_examples=100)
@given(script=st.lists(st.one_of([*network, forgetting]), min_size=20, max_size=80))
def test_lost_history_only_skips_at_a_snapshot_that_did_not_recover(
    script: list[tuple[str, Any]],
) -> None:
    server, resume, delivered = play(script)
    check_increasing(server, resume, delivered)
    for before, after in pairwise(delivered):
        assert before.seq is not None
        assert after.seq is not None
        assert after.seq == before.seq + 1 or after.data.get("recovered") is False
