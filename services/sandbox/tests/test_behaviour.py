from __future__ import annotations

import asyncio
import math

import pytest

from tripline.common.errors import ValidationFailed
from tripline.common.validation import validate
from tripline.sandbox.behaviour import (
    DEFAULT_SLOW_DELAY_S,
    Behaviour,
    Mode,
    ModeChange,
    ProviderUnavailable,
)


class RecordingSleep:
    """Stands in for asyncio.sleep: remembers the delays instead of waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def succeed(behaviour: Behaviour) -> str:
    async with behaviour.call():
        return "done"


async def wait_until_hanging(behaviour: Behaviour) -> None:
    for _ in range(100):
        if behaviour.hanging:
            return
        await asyncio.sleep(0)
    raise AssertionError("the request was never held")


async def test_ok_mode_runs_the_block_and_counts_a_success() -> None:
    behaviour = Behaviour("payments")

    assert await succeed(behaviour) == "done"

    snapshot = behaviour.snapshot()
    assert snapshot["mode"] == "ok"
    assert (snapshot["received"], snapshot["succeeded"], snapshot["failed"]) == (1, 1, 0)


async def test_fail_mode_raises_503_without_running_the_block() -> None:
    behaviour = Behaviour("payments")
    behaviour.configure(Mode.FAIL)
    ran = False

    with pytest.raises(ProviderUnavailable) as caught:
        async with behaviour.call():
            ran = True

    assert not ran
    assert caught.value.status == 503
    assert caught.value.extra == {"provider": "payments"}
    assert behaviour.counters.failed == 1
    assert behaviour.counters.succeeded == 0


async def outcomes(behaviour: Behaviour, calls: int) -> str:
    """``calls`` calls in a row as a string: ``.`` for a success, ``x`` for a failure."""
    seen = ""
    for _ in range(calls):
        try:
            await succeed(behaviour)
        except ProviderUnavailable:
            seen += "x"
        else:
            seen += "."
    return seen


async def test_fail_mode_with_a_ratio_fails_that_share_of_calls_evenly() -> None:
    behaviour = Behaviour("notifications")
    behaviour.configure(Mode.FAIL, fail_ratio=0.5)

    assert await outcomes(behaviour, 8) == ".x.x.x.x"
    assert behaviour.snapshot()["fail_ratio"] == 0.5
    assert (behaviour.counters.succeeded, behaviour.counters.failed) == (4, 4)

    behaviour.configure(Mode.FAIL, fail_ratio=0.25)
    assert await outcomes(behaviour, 8) == "...x...x"


async def test_fail_mode_without_a_ratio_fails_every_call_again() -> None:
    behaviour = Behaviour("notifications")
    behaviour.configure(Mode.FAIL, fail_ratio=0.5)
    behaviour.configure(Mode.FAIL)

    assert await outcomes(behaviour, 3) == "xxx"
    behaviour.configure(Mode.OK)
    assert behaviour.fail_ratio == 1.0
    assert await outcomes(behaviour, 2) == ".."


async def test_an_error_inside_the_block_counts_as_failed() -> None:
    behaviour = Behaviour("payments")

    with pytest.raises(RuntimeError):
        async with behaviour.call():
            raise RuntimeError("boom")

    assert (behaviour.counters.received, behaviour.counters.failed) == (1, 1)


async def test_slow_mode_sleeps_for_the_delay_then_succeeds() -> None:
    sleep = RecordingSleep()
    behaviour = Behaviour("notifications", sleep=sleep)
    behaviour.configure(Mode.SLOW, 0.25)

    assert await succeed(behaviour) == "done"

    assert sleep.delays == [0.25]
    assert behaviour.counters.succeeded == 1


async def test_slow_mode_without_a_delay_uses_the_default() -> None:
    sleep = RecordingSleep()
    behaviour = Behaviour("notifications", sleep=sleep)
    behaviour.configure(Mode.SLOW)

    await succeed(behaviour)

    assert sleep.delays == [DEFAULT_SLOW_DELAY_S]
    assert behaviour.delay_s == DEFAULT_SLOW_DELAY_S


async def test_other_modes_do_not_sleep() -> None:
    sleep = RecordingSleep()
    behaviour = Behaviour("notifications", sleep=sleep)
    behaviour.configure(Mode.OK, 5.0)

    await succeed(behaviour)

    assert sleep.delays == []


async def test_hang_holds_the_request_until_the_mode_changes() -> None:
    behaviour = Behaviour("payments")
    behaviour.configure(Mode.HANG)

    call = asyncio.create_task(succeed(behaviour))
    await wait_until_hanging(behaviour)
    assert not call.done()
    assert behaviour.snapshot()["hanging"] == 1

    behaviour.configure(Mode.OK)

    assert await asyncio.wait_for(call, 2) == "done"
    assert behaviour.hanging == 0
    assert behaviour.counters.succeeded == 1


async def test_a_released_request_answers_in_the_new_mode() -> None:
    behaviour = Behaviour("payments")
    behaviour.configure(Mode.HANG)
    call = asyncio.create_task(succeed(behaviour))
    await wait_until_hanging(behaviour)

    behaviour.configure(Mode.FAIL)

    with pytest.raises(ProviderUnavailable):
        await asyncio.wait_for(call, 2)
    assert behaviour.counters.failed == 1


async def test_hanging_again_before_the_request_wakes_keeps_it_held() -> None:
    behaviour = Behaviour("payments")
    behaviour.configure(Mode.HANG)
    call = asyncio.create_task(succeed(behaviour))
    await wait_until_hanging(behaviour)

    behaviour.configure(Mode.OK)
    behaviour.configure(Mode.HANG)
    for _ in range(5):
        await asyncio.sleep(0)

    assert not call.done()
    behaviour.configure(Mode.OK)
    assert await asyncio.wait_for(call, 2) == "done"


async def test_hang_gives_up_after_the_maximum() -> None:
    behaviour = Behaviour("payments", max_hang_s=0.01)
    behaviour.configure(Mode.HANG)

    with pytest.raises(ProviderUnavailable, match="hung"):
        await asyncio.wait_for(succeed(behaviour), 2)

    assert behaviour.hanging == 0
    assert behaviour.counters.failed == 1


async def test_an_abandoned_request_stops_hanging_and_counts_as_failed() -> None:
    behaviour = Behaviour("payments")
    behaviour.configure(Mode.HANG)
    call = asyncio.create_task(succeed(behaviour))
    await wait_until_hanging(behaviour)

    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call

    assert behaviour.hanging == 0
    assert behaviour.counters.failed == 1


async def test_close_releases_held_requests_with_503() -> None:
    behaviour = Behaviour("payments")
    behaviour.configure(Mode.HANG)
    call = asyncio.create_task(succeed(behaviour))
    await wait_until_hanging(behaviour)

    behaviour.close()

    with pytest.raises(ProviderUnavailable, match="stopping"):
        await asyncio.wait_for(call, 2)


async def test_reset_returns_to_ok_with_zero_counters_and_releases_held_requests() -> None:
    behaviour = Behaviour("payments")
    await succeed(behaviour)
    behaviour.configure(Mode.HANG)
    call = asyncio.create_task(succeed(behaviour))
    await wait_until_hanging(behaviour)

    behaviour.reset()

    assert await asyncio.wait_for(call, 2) == "done"
    assert behaviour.snapshot() == {
        "mode": "ok",
        "delay_s": 0.0,
        "fail_ratio": 1.0,
        "received": 0,
        "succeeded": 0,
        "failed": 0,
        "hanging": 0,
    }


def test_mode_change_accepts_a_mode_and_an_optional_delay() -> None:
    assert validate(ModeChange, {"mode": "slow", "delay_s": 0.5}) == ModeChange(
        mode=Mode.SLOW, delay_s=0.5
    )
    assert validate(ModeChange, {"mode": "hang"}).delay_s is None


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "sleepy"},
        {"mode": "slow", "delay_s": -1},
        {"mode": "slow", "delay_s": 300.5},
        {"mode": "slow", "delay_s": math.nan},
        {"mode": "slow", "delay_s": math.inf},
        {"mode": "ok", "colour": "red"},
        {"mode": "fail", "fail_ratio": 0},
        {"mode": "fail", "fail_ratio": 1.5},
        {"mode": "fail", "fail_ratio": math.nan},
        {"mode": "slow", "fail_ratio": 0.5},
        {},
        [],
    ],
)
def test_mode_change_rejects_bad_input(body: object) -> None:
    with pytest.raises(ValidationFailed):
        validate(ModeChange, body)
