"""The rate-limit arithmetic, checked against the contract: at most ``limit`` hits in every
continuous ``window_s``-second span, and a ``Retry-After`` that is exactly the wait."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from itertools import accumulate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.common.ratelimit import (
    Decision,
    LocalLimiter,
    Quota,
    Source,
    Tier,
    decide,
    limit_key,
    rate_limit_headers,
)

POLICY = re.compile(r'"(?P<tier>[a-z]+)";q=(?P<q>\d+);w=(?P<w>\d+)')
STATE = re.compile(r'"(?P<tier>[a-z]+)";r=(?P<r>\d+);t=(?P<t>\d+)')

QUOTAS = st.builds(Quota, limit=st.integers(min_value=1, max_value=8), window_s=st.integers(1, 8))
# Gaps between hits: often none (a burst), sometimes about a second, sometimes a window or more.
GAPS = st.one_of(
    st.just(0.0),
    st.floats(min_value=0, max_value=1.5),
    st.floats(min_value=0, max_value=12),
)
STARTS = st.one_of(st.floats(min_value=0, max_value=1e6), st.just(1.7e9 + 0.999999))


class ListClock:
    """Returns the given times in order, one per reading."""

    def __init__(self, times: Sequence[float]) -> None:
        self._times = iter(times)

    def __call__(self) -> float:
        return next(self._times)


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def counted(buckets: Mapping[int, int], now: float, window: int) -> int:
    return sum(hits for second, hits in buckets.items() if second >= math.floor(now) - window)


def after(buckets: Mapping[int, int], now: float, decision: Decision) -> dict[int, int]:
    result = dict(buckets)
    if decision.allowed:
        result[math.floor(now)] = result.get(math.floor(now), 0) + 1
    return result


def run(quota: Quota, times: Sequence[float]) -> list[Decision]:
    limiter = LocalLimiter(clock=ListClock(times))
    return [limiter.hit("k", quota) for _ in times]


def parsed(tier: Tier, decision: Decision) -> dict[str, dict[str, str]]:
    headers = dict(rate_limit_headers(tier, decision))
    policy = POLICY.fullmatch(headers[b"ratelimit-policy"].decode())
    state = STATE.fullmatch(headers[b"ratelimit"].decode())
    assert policy is not None
    assert state is not None
    fields = {"policy": policy.groupdict(), "state": state.groupdict()}
    if b"retry-after" in headers:
        fields["retry"] = {"after": headers[b"retry-after"].decode()}
    return fields


def test_a_first_hit_is_admitted_and_counted_for_the_whole_window() -> None:
    assert decide({}, 1000.3, Quota(3, 60)) == Decision(
        allowed=True, limit=3, remaining=2, reset_s=61, retry_after_s=0, window_s=60
    )


def test_exactly_the_limit_is_admitted() -> None:
    clock = ManualClock(1000.0)
    limiter = LocalLimiter(clock=clock)
    decisions = []
    for step in range(4):
        clock.now = 1000.0 + step * 0.1
        decisions.append(limiter.hit("k", Quota(3, 60)))
    assert [(d.allowed, d.remaining) for d in decisions] == [
        (True, 2),
        (True, 1),
        (True, 0),
        (False, 0),
    ]
    assert all(d.source is Source.LOCAL for d in decisions)


def test_a_refusal_waits_until_enough_of_the_oldest_hits_have_left() -> None:
    decision = decide({1000: 2, 1010: 1}, 1030.5, Quota(3, 60))
    # One hit must leave; the second-1000 bucket stops counting at 1061.
    assert decision == Decision(
        allowed=False, limit=3, remaining=0, reset_s=31, retry_after_s=31, window_s=60
    )
    assert decide({1000: 1, 1010: 2}, 1030.5, Quota(2, 60)).retry_after_s == 41


def test_reset_is_when_the_oldest_counted_hit_leaves() -> None:
    decision = decide({990: 1, 1010: 1}, 1030.5, Quota(5, 60))
    assert (decision.remaining, decision.reset_s) == (2, 21)


def test_expired_buckets_are_ignored() -> None:
    assert decide({900: 50, 939: 50}, 1000.0, Quota(1, 60)).allowed


def test_a_burst_at_a_window_edge_does_not_double_the_limit() -> None:
    """A fixed window would admit 3 at 59.9 and 3 more at 60.1."""
    times = [59.9] * 3 + [60.1, 119.9, 119.99, 120.0]
    decisions = run(Quota(3, 60), times)
    assert [d.allowed for d in decisions] == [True, True, True, False, False, False, True]
    assert decisions[3].retry_after_s == 60
    assert decisions[5].retry_after_s == 1


@pytest.mark.parametrize(("limit", "window"), [(0, 60), (-1, 60), (1, 0), (5, -60)])
def test_a_quota_below_one_is_refused(limit: int, window: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Quota(limit, window)


def test_headers_of_an_admission_and_a_refusal() -> None:
    admitted = decide({}, 10.0, Quota(100, 60))
    refused = decide({10: 1}, 10.5, Quota(1, 60))
    assert rate_limit_headers(Tier.STANDARD, admitted) == [
        (b"ratelimit-policy", b'"standard";q=100;w=60'),
        (b"ratelimit", b'"standard";r=99;t=61'),
    ]
    assert rate_limit_headers(Tier.UPLOAD, refused) == [
        (b"ratelimit-policy", b'"upload";q=1;w=60'),
        (b"ratelimit", b'"upload";r=0;t=61'),
        (b"retry-after", b"61"),
    ]


@pytest.mark.parametrize(
    ("tier", "subject", "key"),
    [
        (Tier.STANDARD, "u:rider-1", "rl:standard:u:rider-1"),
        (Tier.CRITICAL, "ip:10.0.0.7", "rl:critical:ip:10.0.0.7"),
        (Tier.UPLOAD, "ip:::1", "rl:upload:ip:::1"),
    ],
)
def test_plain_subjects_are_kept_readable(tier: Tier, subject: str, key: str) -> None:
    assert limit_key(tier, subject) == key


@pytest.mark.parametrize("subject", ["", "u:" + "x" * 200, "u:a b", "u:\ud800", "u:{slot}", "é"])
def test_other_subjects_are_hashed_into_short_printable_keys(subject: str) -> None:
    key = limit_key(Tier.STANDARD, subject)
    assert re.fullmatch(r"rl:standard:#[0-9a-f]{32}", key)
    key.encode("ascii")


@given(st.text(max_size=300), st.text(max_size=300))
def test_distinct_subjects_have_distinct_bounded_keys(first: str, second: str) -> None:
    keys = {limit_key(Tier.STANDARD, first), limit_key(Tier.STANDARD, second)}
    assert len(keys) == (1 if first == second else 2)
    assert all(len(key) <= len("rl:standard:") + 128 for key in keys)


@given(QUOTAS, STARTS, st.lists(GAPS, min_size=1, max_size=60))
def test_no_continuous_window_ever_holds_more_than_the_limit(
    quota: Quota, start: float, gaps: list[float]
) -> None:
    times = list(accumulate(gaps, initial=start))
    decisions = run(quota, times)
    admitted = [t for t, d in zip(times, decisions, strict=True) if d.allowed]
    for t in admitted:
        assert sum(t - quota.window_s <= s <= t for s in admitted) <= quota.limit
    # The price of whole-second buckets is at most one second of caution.
    for t, decision in zip(times, decisions, strict=True):
        if not decision.allowed:
            recent = [s for s in admitted if t - quota.window_s - 1 <= s <= t]
            assert len(recent) >= quota.limit


@given(QUOTAS, st.integers(0, 10**9), st.floats(0, 1, exclude_max=True), st.data())
def test_retry_after_and_reset_are_exact(
    quota: Quota, second: int, fraction: float, data: st.DataObject
) -> None:
    now = second + fraction
    buckets = data.draw(
        st.dictionaries(
            st.integers(second - quota.window_s - 3, second),
            st.integers(1, quota.limit + 2),
            max_size=quota.window_s + 4,
        )
    )
    decision = decide(buckets, now, quota)
    assert decision.remaining >= 0
    assert decision.reset_s >= 1
    if not decision.allowed:
        wait = decision.retry_after_s
        assert wait >= 1
        assert decision.reset_s == wait
        assert decide(buckets, now + wait, quota).allowed
        assert wait == 1 or not decide(buckets, now + wait - 1, quota).allowed
    else:
        assert decision.retry_after_s == 0
        state = after(buckets, now, decision)
        in_use = counted(state, now, quota.window_s)
        assert decision.remaining == quota.limit - in_use
        reset = decision.reset_s
        assert counted(state, now + reset, quota.window_s) < in_use
        assert reset == 1 or counted(state, now + reset - 1, quota.window_s) == in_use


@given(
    QUOTAS,
    st.lists(st.tuples(st.sampled_from("abc"), GAPS), min_size=1, max_size=60),
)
def test_keys_do_not_share_counters(quota: Quota, hits: list[tuple[str, float]]) -> None:
    times = list(accumulate((gap for _, gap in hits), initial=1000.0))[1:]
    shared = LocalLimiter(clock=ListClock(times))
    together = [shared.hit(key, quota) for key, _ in hits]
    for key in "abc":
        alone = run(quota, [t for t, (k, _) in zip(times, hits, strict=True) if k == key])
        assert [d for d, (k, _) in zip(together, hits, strict=True) if k == key] == alone


@given(st.sampled_from(list(Tier)), QUOTAS, st.lists(GAPS, min_size=1, max_size=30))
def test_headers_are_parseable_and_never_negative(
    tier: Tier, quota: Quota, gaps: list[float]
) -> None:
    times = list(accumulate(gaps, initial=500.0))
    for decision in run(quota, times):
        fields = parsed(tier, decision)
        assert fields["policy"] == {
            "tier": str(tier),
            "q": str(quota.limit),
            "w": str(quota.window_s),
        }
        assert 0 <= int(fields["state"]["r"]) <= quota.limit - 1
        assert int(fields["state"]["t"]) >= 1
        if decision.allowed:
            assert "retry" not in fields
        else:
            assert int(fields["retry"]["after"]) == int(fields["state"]["t"]) >= 1


def test_the_least_recently_used_key_is_forgotten_beyond_max_keys() -> None:
    limiter = LocalLimiter(max_keys=2, clock=ManualClock())
    quota = Quota(1, 60)
    for key in ("a", "b", "a", "c"):
        limiter.hit(key, quota)
    # "a" was used after "b", so "b" went when "c" arrived.
    assert not limiter.hit("a", quota).allowed
    assert limiter.hit("b", quota).allowed


def test_a_key_is_free_again_once_its_hits_have_left_the_window() -> None:
    clock = ManualClock(1000.5)
    limiter = LocalLimiter(clock=clock)
    quota = Quota(2, 10)
    assert [limiter.hit("k", quota).allowed for _ in range(3)] == [True, True, False]
    clock.now = 1010.9
    assert not limiter.hit("k", quota).allowed
    clock.now = 1011.0
    assert limiter.hit("k", quota).remaining == 1
