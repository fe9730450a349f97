from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tripline.tracking.outbox import LOCATION, Frame, Outbox


def location(seq: int) -> Frame:
    return Frame(text=f"l{seq}", seq=seq, kind=LOCATION)


def status(seq: int) -> Frame:
    return Frame(text=f"s{seq}", seq=seq, kind="status")


def test_a_socket_that_keeps_up_gets_everything_in_order() -> None:
    outbox = Outbox(capacity=8, behind_after=4)
    for seq in range(3):
        assert outbox.offer(location(seq))
    assert [f.seq for f in outbox.take()] == [0, 1, 2]
    assert len(outbox) == 0


def test_a_socket_behind_keeps_only_the_newest_location_and_every_status() -> None:
    outbox = Outbox(capacity=8, behind_after=2)
    frames = [location(1), status(2), location(3), location(4), status(5), location(6)]
    assert all(outbox.offer(frame) for frame in frames)
    assert [f.text for f in outbox.take()] == ["s2", "s5", "l6"]
    assert outbox.dropped == 3


def test_a_socket_full_of_undroppable_frames_is_stuck() -> None:
    outbox = Outbox(capacity=3, behind_after=2)
    assert all(outbox.offer(status(seq)) for seq in range(3))
    assert not outbox.offer(status(3))
    assert not outbox.offer(location(4))


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=200), st.integers(2, 10))
def test_statuses_are_never_dropped_and_order_is_kept(
    ops: list[tuple[bool, bool]], cap: int
) -> None:
    outbox = Outbox(capacity=cap, behind_after=max(1, cap // 2))
    sent: list[Frame] = []
    offered_statuses: list[int] = []
    for seq, (is_location, drain) in enumerate(ops):
        frame = location(seq) if is_location else status(seq)
        if not outbox.offer(frame):
            assert len([f for f in outbox.take() if not f.droppable]) == cap
            return
        if not is_location:
            offered_statuses.append(seq)
        if drain:
            sent += outbox.take()
    sent += outbox.take()
    assert [f.seq for f in sent] == sorted(f.seq for f in sent if f.seq is not None)
    assert [f.seq for f in sent if not f.droppable] == offered_statuses
    assert len(outbox) == 0
