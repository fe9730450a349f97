"""Load profiles: every profile of the real ``tests/load/profiles.yaml`` runs, with the owners'
numbers in ``full`` and the spike's shape, and the k6 scenarios that play a profile."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tripline.loadtest.profiles import (
    SCENARIOS,
    Profile,
    ProfileError,
    k6_scenarios,
    longest_run_s,
    parse,
    scaled,
    scenario_params,
)

REPO = Path(__file__).resolve().parents[3]
PROFILES_TEXT = (REPO / "tests" / "load" / "profiles.yaml").read_text()


def raw() -> dict[str, Any]:
    loaded = yaml.safe_load(PROFILES_TEXT)
    assert isinstance(loaded, dict)
    return loaded


PROFILE_NAMES = sorted(raw()["profiles"])


def with_profile(body: str, name: str = "probe") -> str:
    """A profiles file with the real file's defaults and one profile ``name`` of ``body``."""
    return (
        yaml.safe_dump({"defaults": raw()["defaults"]})
        + f"profiles:\n  {name}:\n"
        + "".join(f"    {line}\n" for line in textwrap.dedent(body).strip().splitlines())
    )


def levels_at_stage_ends(profile: Profile) -> list[tuple[float, float, float]]:
    """``(start level, end level, seconds)`` of each stage (k6 starts every scenario at 0)."""
    shape: list[tuple[float, float, float]] = []
    previous = 0.0
    for seconds, level in profile.stages:
        shape.append((previous, level, seconds))
        previous = level
    return shape


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_every_real_profile_parses_into_scenarios_k6_can_run(name: str) -> None:
    profile = parse(PROFILES_TEXT, name)
    assert profile.name == name
    assert profile.description
    assert profile.duration_s > 0
    assert set(profile.scenarios) <= set(SCENARIOS)
    assert set(k6_scenarios(profile)) == set(profile.scenarios)
    defaults = raw()["defaults"]
    for scenario, params in profile.scenarios.items():
        # Each scenario has every parameter the file's defaults give it.
        assert set(defaults[scenario]) <= set(params), scenario
        assert profile.peak(scenario) >= 1
    assert profile.city == defaults["city"]


def test_the_real_file_has_the_profiles_the_makefile_and_ci_name() -> None:
    assert {"smoke", "ci", "full", "spike"} <= set(PROFILE_NAMES)


def test_full_holds_the_owners_numbers() -> None:
    full = parse(PROFILES_TEXT, "full")
    assert full.concurrency() == {"users": 10_000, "uploads": 7_000, "tracking": 3_000}


def test_spike_rises_from_a_tenth_to_the_full_level_within_a_minute() -> None:
    spike = parse(PROFILES_TEXT, "spike")
    shape = levels_at_stage_ends(spike)
    # One rise after the first stage's ramp from zero: a tenth to all of it within 60 s.
    rises = [(start, end, s) for start, end, s in shape[1:] if end > start]
    assert [(start, end) for start, end, _ in rises] == [(0.1, 1.0)]
    assert rises[0][2] <= 60
    # It holds a tenth before the rise, the full level after it, and comes back down.
    rise_at = next(i for i, (start, end, _) in enumerate(shape) if (start, end) == (0.1, 1.0))
    assert all(end == 0.1 for _, end, _ in shape[:rise_at])
    assert shape[rise_at + 1][1] == 1.0
    assert shape[-1][1] == 0.1
    assert max(level for _, level in spike.stages) == 1.0


def test_spike_peaks_at_the_owners_numbers_from_a_tenth_of_them() -> None:
    spike = parse(PROFILES_TEXT, "spike")
    full = parse(PROFILES_TEXT, "full")
    assert spike.concurrency() == full.concurrency()
    users = k6_scenarios(spike)["users"]["stages"]
    assert users[0]["target"] * 10 == spike.peak("users")


def test_smoke_lasts_at_most_90_seconds_of_stages() -> None:
    smoke = parse(PROFILES_TEXT, "smoke")
    assert smoke.duration_s <= 90
    assert set(smoke.scenarios) == set(SCENARIOS)


def test_profile_values_override_the_defaults_and_defaults_fill_the_rest() -> None:
    smoke = parse(PROFILES_TEXT, "smoke")
    defaults = raw()["defaults"]["users"]
    users = smoke.scenarios["users"]
    assert users["think_s"] == 1.5 != defaults["think_s"]
    assert users["users_per_vu"] == 10
    assert users["driver_share"] == defaults["driver_share"]
    assert users["vus"] == 10


def test_scenario_params_add_the_stages_length() -> None:
    smoke = parse(PROFILES_TEXT, "smoke")
    params = scenario_params(smoke)
    assert set(params) == set(smoke.scenarios)
    for name, values in params.items():
        assert values["total_s"] == smoke.duration_s == 70
        assert {k: v for k, v in values.items() if k != "total_s"} == smoke.scenarios[name]
    assert "total_s" not in smoke.scenarios["users"]


def test_k6_scenarios_ramp_vus_to_the_rounded_share_of_each_stage() -> None:
    text = with_profile(
        """
        description: an odd shape
        stages: [[2.5, 0.5], [10, 0.25], [30, 1.0], [5, 0]]
        users: {vus: 7}
        tracking: {vus: 40}
        """
    )
    profile = parse(text, "probe")
    scenarios = k6_scenarios(profile)
    assert scenarios["users"] == {
        "executor": "ramping-vus",
        "exec": "users",
        "startVUs": 0,
        "stages": [
            {"duration": "3s", "target": 4},
            {"duration": "10s", "target": 2},
            {"duration": "30s", "target": 7},
            {"duration": "5s", "target": 0},
        ],
        "gracefulRampDown": "30s",
        "gracefulStop": "30s",
    }
    assert [s["target"] for s in scenarios["tracking"]["stages"]] == [20, 10, 40, 0]
    assert scenarios["tracking"]["exec"] == "tracking"
    assert "uploads" not in scenarios


def test_a_tracking_iteration_is_never_cut_short_by_a_ramp_down() -> None:
    # k6 never ends a run while an interrupted iteration holds WebSockets: the graceful
    # ramp-down and stop must outlast a whole tracking iteration.
    profile = parse(
        with_profile("stages: [[10, 1.0], [10, 0]]\ntracking: {vus: 2, hold_s: 90}"), "probe"
    )
    tracking = k6_scenarios(profile)["tracking"]
    params = profile.scenarios["tracking"]
    iteration_s = params["settle_s"] + params["hold_s"] + params["grace_s"]
    assert int(tracking["gracefulRampDown"].removesuffix("s")) > iteration_s
    assert int(tracking["gracefulStop"].removesuffix("s")) > iteration_s


def test_the_longest_run_covers_setup_stages_and_the_longest_graceful_stop() -> None:
    profile = parse(
        with_profile("stages: [[10, 1.0], [50, 1.0]]\ntracking: {vus: 100, hold_s: 40}"), "probe"
    )
    graceful = int(k6_scenarios(profile)["tracking"]["gracefulStop"].removesuffix("s"))
    # Setup: 60 s and a fifth of a second per trip; one trip per tracking VU.
    assert longest_run_s(profile) == 60 + 100 // 5 + 60 + graceful


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_every_real_stage_target_is_the_scenarios_vus_times_its_level(name: str) -> None:
    profile = parse(PROFILES_TEXT, name)
    for scenario, k6 in k6_scenarios(profile).items():
        vus = profile.scenarios[scenario]["vus"]
        assert [s["target"] for s in k6["stages"]] == [
            round(vus * level) for _, level in profile.stages
        ]
        assert [s["duration"] for s in k6["stages"]] == [
            f"{math.ceil(seconds)}s" for seconds, _ in profile.stages
        ]
        assert k6["executor"] == "ramping-vus"


def test_an_unknown_profile_raises_naming_the_profiles_there_are() -> None:
    with pytest.raises(ProfileError, match=r"no profile 'huge'; the profiles are .*smoke"):
        parse(PROFILES_TEXT, "huge")


def test_a_file_without_profiles_raises() -> None:
    with pytest.raises(ProfileError, match="no profile 'smoke'"):
        parse("just: words\n", "smoke")


@pytest.mark.parametrize(
    "stages",
    [
        "[]",
        "[[10]]",
        "[[10, 1.0, 3]]",
        "[[0, 1.0]]",
        "[[-5, 1.0]]",
        "[[10, 1.5]]",
        "[[10, -0.1]]",
        "[[10, .nan]]",
        "[[10, high]]",
        "fast",
        "12",
    ],
)
def test_bad_stages_raise(stages: str) -> None:
    text = with_profile(f"stages: {stages}\nusers: {{vus: 3}}")
    with pytest.raises(ProfileError, match="profile probe: stages"):
        parse(text, "probe")


def test_missing_stages_raise() -> None:
    with pytest.raises(ProfileError, match="profile probe: stages"):
        parse(with_profile("users: {vus: 3}"), "probe")


@pytest.mark.parametrize("seconds", [".nan", ".inf"])
def test_stages_of_seconds_that_are_no_length_raise(seconds: str) -> None:
    # "stages need seconds > 0": NaN is not, and an endless stage cannot be given to k6.
    text = with_profile(f"stages: [[{seconds}, 1.0]]\nusers: {{vus: 3}}")
    with pytest.raises(ProfileError, match="profile probe: stages"):
        parse(text, "probe")


@pytest.mark.parametrize("vus", ["0", "-2", "2.5", "ten"])
def test_vus_must_be_a_whole_number_of_at_least_one(vus: str) -> None:
    text = with_profile(f"stages: [[10, 1.0]]\nusers: {{vus: {vus}}}")
    with pytest.raises(ProfileError, match=r"users\.vus must be a whole number"):
        parse(text, "probe")


def test_a_profile_without_a_scenario_raises() -> None:
    with pytest.raises(ProfileError, match="runs no scenario"):
        parse(with_profile("stages: [[10, 1.0]]"), "probe")


def test_peak_and_concurrency_follow_the_highest_level() -> None:
    text = with_profile(
        """
        stages: [[10, 0.2], [10, 0.6], [10, 0.3]]
        users: {vus: 100, users_per_vu: 5}
        uploads: {vus: 10, uploads_per_vu: 3}
        """
    )
    profile = parse(text, "probe")
    assert profile.peak("users") == 60
    assert profile.concurrency() == {"users": 300, "uploads": 18}
    assert profile.duration_s == 30


def test_scaled_multiplies_every_scenarios_vus_and_names_the_factor() -> None:
    smoke = parse(PROFILES_TEXT, "smoke")
    bigger = scaled(smoke, 2.5)
    assert bigger.name == "smokex2.5"
    assert {name: p["vus"] for name, p in bigger.scenarios.items()} == {
        "users": 25,
        "uploads": 5,
        "tracking": 25,
    }
    assert bigger.stages == smoke.stages
    assert bigger.city == smoke.city
    # The rest of each scenario is as it was, and so is the profile it came from.
    assert bigger.scenarios["users"]["think_s"] == smoke.scenarios["users"]["think_s"]
    assert smoke.scenarios["users"]["vus"] == 10


def test_scaled_keeps_at_least_one_vu_and_the_name_at_one() -> None:
    smoke = parse(PROFILES_TEXT, "smoke")
    assert all(p["vus"] == 1 for p in scaled(smoke, 0.01).scenarios.values())
    assert scaled(smoke, 1).name == "smoke"
    assert scaled(smoke, 1).scenarios == smoke.scenarios


@pytest.mark.parametrize("factor", [0.0, -1.0, float("nan")])
def test_a_scale_that_is_not_positive_raises(factor: float) -> None:
    with pytest.raises(ProfileError, match="a scale must be positive"):
        scaled(parse(PROFILES_TEXT, "smoke"), factor)
