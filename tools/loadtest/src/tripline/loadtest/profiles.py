"""Load profiles (``tests/load/profiles.yaml``): their scenarios, sizes and shape, and the k6
scenarios that play them. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

SCENARIOS = ("users", "uploads", "tracking")


class ProfileError(ValueError):
    """The profiles file has no such profile, or a profile that cannot run."""


@dataclass(frozen=True)
class Profile:
    """One profile: ``stages`` as ``(seconds, level)`` pairs, ``scenarios`` as each scenario's
    parameters (the file's defaults with the profile's own values over them)."""

    name: str
    description: str
    stages: tuple[tuple[float, float], ...]
    scenarios: Mapping[str, Mapping[str, Any]]
    city: Mapping[str, Any]

    @property
    def duration_s(self) -> float:
        """How long the stages last, without k6's graceful stop."""
        return sum(seconds for seconds, _ in self.stages)

    def peak(self, scenario: str) -> int:
        """The most VUs ``scenario`` runs at once."""
        vus = int(self.scenarios[scenario]["vus"])
        return round(vus * max(level for _, level in self.stages))

    def concurrency(self) -> dict[str, int]:
        """At the peak: signed-in users, uploads in flight, tracking subscribers."""
        counts: dict[str, int] = {}
        for name, per_vu in (
            ("users", "users_per_vu"),
            ("uploads", "uploads_per_vu"),
            ("tracking", "watchers_per_trip"),
        ):
            if name in self.scenarios:
                counts[name] = self.peak(name) * int(self.scenarios[name][per_vu])
        return counts


def parse(text: str, name: str) -> Profile:
    """Profile ``name`` of a profiles file; raises :class:`ProfileError`."""
    data = yaml.safe_load(text)
    profiles = data.get("profiles", {}) if isinstance(data, Mapping) else {}
    if name not in profiles:
        raise ProfileError(f"no profile {name!r}; the profiles are {', '.join(sorted(profiles))}")
    raw = profiles[name]
    defaults = data.get("defaults", {})
    try:
        stages = tuple((float(seconds), float(level)) for seconds, level in raw["stages"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"profile {name}: stages must be [seconds, level] pairs") from exc
    if not stages or any(not 0 < s < math.inf or not 0 <= lv <= 1 for s, lv in stages):
        raise ProfileError(f"profile {name}: stages need seconds > 0 and levels in [0, 1]")
    scenarios: dict[str, dict[str, Any]] = {}
    for scenario in SCENARIOS:
        if scenario in raw:
            params = {**defaults.get(scenario, {}), **raw[scenario]}
            if not isinstance(params.get("vus"), int) or params["vus"] < 1:
                raise ProfileError(f"profile {name}: {scenario}.vus must be a whole number >= 1")
            scenarios[scenario] = params
    if not scenarios:
        raise ProfileError(f"profile {name} runs no scenario")
    return Profile(name, str(raw.get("description", "")), stages, scenarios, defaults["city"])


def scaled(profile: Profile, factor: float) -> Profile:
    """``profile`` with every scenario's VUs multiplied by ``factor`` (at least one each), for
    finding how much load the platform carries; raises :class:`ProfileError` for a factor
    that is not positive."""
    if not 0 < factor < math.inf:
        raise ProfileError(f"a scale must be positive, not {factor}")
    return Profile(
        f"{profile.name}x{factor:g}" if factor != 1 else profile.name,
        profile.description,
        profile.stages,
        {
            name: {**params, "vus": max(1, round(params["vus"] * factor))}
            for name, params in profile.scenarios.items()
        },
        profile.city,
    )


def _seconds(value: float) -> str:
    return f"{math.ceil(value)}s"


def k6_scenarios(profile: Profile) -> dict[str, dict[str, Any]]:
    """k6's ``options.scenarios``: each scenario a ramping-vus executor on the profile's
    stages. The scripts end their iterations by the end of the stages themselves (they know
    ``total_s``), so the graceful stop only covers requests still in flight."""
    scenarios: dict[str, dict[str, Any]] = {}
    for name, params in profile.scenarios.items():
        vus = int(params["vus"])
        grace = 30.0
        if name == "tracking":
            # A tracking iteration must end by itself: k6 1.1 never finishes a run while an
            # interrupted iteration still holds WebSockets open (seen in a spike's ramp-down).
            grace = max(grace, params["settle_s"] + params["hold_s"] + params["grace_s"] + 10)
        scenarios[name] = {
            "executor": "ramping-vus",
            "exec": name,
            "startVUs": 0,
            "stages": [
                {"duration": _seconds(seconds), "target": round(vus * level)}
                for seconds, level in profile.stages
            ],
            "gracefulRampDown": _seconds(grace),
            "gracefulStop": _seconds(grace),
        }
    return scenarios


def longest_run_s(profile: Profile) -> float:
    """The longest k6 may take on ``profile``: its setup's bound, the stages and the longest
    graceful stop."""
    scenarios = k6_scenarios(profile)
    graceful = max(int(s["gracefulStop"].removesuffix("s")) for s in scenarios.values())
    return setup_timeout_s(profile) + profile.duration_s + graceful


def setup_timeout_s(profile: Profile) -> int:
    """k6's bound on its setup: each trip of the tracking scenario is two calls there, made
    in batches of 50."""
    trips = profile.peak("tracking") if "tracking" in profile.scenarios else 0
    return 60 + trips // 5


def scenario_params(profile: Profile) -> dict[str, dict[str, Any]]:
    """What each script reads of its scenario: the profile's values and the stages' length."""
    return {
        name: {**params, "total_s": profile.duration_s}
        for name, params in profile.scenarios.items()
    }
