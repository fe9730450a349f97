from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.common.auth import Identity, Role
from tripline.core.sos import SosRecord, may_raise, plan_notifications, sos_id_for

RECORD = SosRecord(
    sos_id="s1",
    trip_id="t1",
    by="r1",
    lat=52.5,
    lng=13.4,
    message="help",
    created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
)


def test_a_replayed_key_gives_the_same_id_for_the_same_user_only() -> None:
    assert sos_id_for("u1", "k") == sos_id_for("u1", "k")
    assert sos_id_for("u1", "k") != sos_id_for("u2", "k")
    assert sos_id_for("u1", "k") != sos_id_for("u1", "k2")


def test_without_a_key_every_sos_gets_a_fresh_id() -> None:
    assert sos_id_for("u1", None) != sos_id_for("u1", None)
    assert sos_id_for("u1", "") != sos_id_for("u1", "")


@given(
    lat=st.floats(-90, 90),
    lng=st.floats(-180, 180),
    message=st.none() | st.text(min_size=1, max_size=50),
)
def test_a_record_survives_the_stream_unchanged(
    lat: float, lng: float, message: str | None
) -> None:
    record = SosRecord("s", "t", "u", lat, lng, message, RECORD.created_at)
    assert SosRecord.from_fields(record.fields()) == record


def test_a_malformed_entry_is_refused() -> None:
    with pytest.raises(KeyError):
        SosRecord.from_fields({"sos_id": "s"})
    with pytest.raises(ValueError, match="could not convert"):
        SosRecord.from_fields({**RECORD.fields(), "lat": "north"})


def test_operations_always_hear_and_the_contact_when_there_is_one() -> None:
    alone = plan_notifications(RECORD, contact_phone=None, operations_address="ops@x")
    assert [(n.to, n.channel) for n in alone] == [("ops@x", "email")]
    both = plan_notifications(RECORD, contact_phone="+4915100000000", operations_address="ops@x")
    assert [(n.to, n.channel) for n in both] == [("ops@x", "email"), ("+4915100000000", "sms")]
    assert {n.reference for n in both} == {"s1"}
    assert all("t1" in n.message and "help" in n.message for n in both)


def test_planning_twice_gives_the_same_notification_ids() -> None:
    first = plan_notifications(RECORD, contact_phone="+4915100000000", operations_address="o")
    again = plan_notifications(RECORD, contact_phone="+4915100000000", operations_address="o")
    assert [n.id for n in first] == [n.id for n in again]
    assert len({n.id for n in first}) == 2


def test_only_the_trips_rider_or_driver_may_raise_an_sos() -> None:
    assert may_raise(Identity("r", Role.RIDER), rider_id="r", driver_id="d")
    assert may_raise(Identity("d", Role.DRIVER), rider_id="r", driver_id="d")
    assert not may_raise(Identity("x", Role.RIDER), rider_id="r", driver_id="d")
    assert not may_raise(Identity("a", Role.ADMIN), rider_id="r", driver_id=None)
