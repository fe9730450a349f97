from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tripline.core.pending_writes import Queued, Write, new_write_id

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=10,
)


@given(
    kind=st.text(min_size=1),
    record=st.text(min_size=1),
    payload=st.dictionaries(st.text(), json_values),
)
def test_a_write_survives_its_trip_through_stream_fields(
    kind: str, record: str, payload: dict[str, object]
) -> None:
    write = Write(kind=kind, record=record, write_id="u:k", payload=payload)
    fields = write.fields()
    assert Write.from_fields(dict(zip(fields[::2], fields[1::2], strict=True))) == write


def test_a_replayed_request_names_the_same_write_and_others_do_not() -> None:
    assert new_write_id("u1", "key") == new_write_id("u1", "key")
    assert new_write_id("u1", "key") != new_write_id("u2", "key")
    assert new_write_id("u1", None) != new_write_id("u1", None)


def test_a_queued_write_answers_pending_with_its_id() -> None:
    assert Queued(write_id="u1:k", entry_id="1-0").body() == {
        "status": "pending",
        "write_id": "u1:k",
    }
