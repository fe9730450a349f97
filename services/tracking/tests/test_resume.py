"""The start of a (re)connecting watcher, against a model of publishing and reconnecting."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tripline.tracking.resume import plan_start

HISTORY = 5


def event(seq: int) -> str:
    return json.dumps({"seq": seq, "type": "location"})


def kept_after(published: int, since: int) -> list[str]:
    oldest = max(1, published - HISTORY + 1)
    return [event(seq) for seq in range(max(oldest, since + 1), published + 1)]


def test_a_first_connection_gets_a_snapshot_at_the_current_number() -> None:
    start = plan_start(None, current=7, kept=kept_after(7, 0))
    assert (start.snapshot, start.recovered, start.after, start.replay) == (True, None, 7, [])


def test_a_reconnection_within_the_history_replays_what_was_missed() -> None:
    start = plan_start(4, current=7, kept=kept_after(7, 4))
    assert [json.loads(e)["seq"] for e in start.replay] == [5, 6, 7]
    assert (start.snapshot, start.recovered, start.after) == (False, True, 7)


def test_a_reconnection_beyond_the_history_is_a_snapshot_not_recovered() -> None:
    start = plan_start(1, current=20, kept=kept_after(20, 1))
    assert (start.snapshot, start.recovered, start.after) == (True, False, 20)


def test_a_number_from_the_future_is_not_recovered() -> None:
    assert plan_start(9, current=3, kept=[]).recovered is False


# Steps: publish n events, or disconnect and reconnect after them.
steps = st.lists(
    st.one_of(st.tuples(st.just("publish"), st.integers(1, 8)), st.just(("reconnect", 0))),
    max_size=30,
)


@given(steps=steps, race=st.integers(0, 3))
def test_a_watcher_sees_every_event_once_in_order_or_an_explicit_snapshot(
    steps: list[tuple[str, int]], race: int
) -> None:
    """Events published between the subscription and the read of the sequence (``race``) reach
    the watcher live as well; whatever happens it never sees a number twice or out of order,
    and a gap is always announced by a non-recovered snapshot."""
    published = 0
    connected_at = plan_start(None, current=0, kept=[])
    seen: list[int] = []
    after = connected_at.after
    for kind, count in steps:
        if kind == "publish":
            published += count
            seen += [seq for seq in range(after + 1, published + 1)]
            after = published
            continue
        since = after
        missed_while_away = published  # published while disconnected
        published += race
        live = list(range(missed_while_away + 1, published + 1))
        start = plan_start(since, current=published, kept=kept_after(published, since))
        delivered = [json.loads(e)["seq"] for e in start.replay]
        delivered += [seq for seq in live if seq > start.after]
        if start.snapshot:
            assert start.recovered is False
            seen = []  # the watcher restarts from the snapshot's state
        seen += delivered
        after = start.after
    assert seen == sorted(set(seen))
    if seen:
        assert seen == list(range(seen[0], seen[-1] + 1))
