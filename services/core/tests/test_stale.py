from __future__ import annotations

from tripline.core.stale import StaleCopy, copy_key


def test_a_stale_copy_says_so_and_how_old_it_is_in_whole_seconds() -> None:
    assert StaleCopy(value={"a": 1}, age_s=12.7).headers() == {
        "Tripline-Stale": "true",
        "Age": "12",
    }


def test_a_clock_that_stepped_back_never_gives_a_negative_age() -> None:
    assert StaleCopy(value=None, age_s=-3.0).headers()["Age"] == "0"


def test_copies_are_kept_per_cache_and_key() -> None:
    assert copy_key("profile", "u1") != copy_key("trip", "u1")
