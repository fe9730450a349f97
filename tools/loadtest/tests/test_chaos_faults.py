"""The chaos suite's faults and background profile: every fault the issue names is there, once,
acting on a process the stack has; the background is the ci profile at the scale this machine
carries, on a shorter shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from tripline.devstack.ownedstack import free_stack_ports, owned_groups
from tripline.loadtest import profiles
from tripline.loadtest.chaos.background import SCALE, chaos_profile
from tripline.loadtest.chaos.faults import FAULT_S, FAULTS, fault_named

REPO = Path(__file__).resolve().parents[3]


def test_every_fault_of_the_issue_is_there_once() -> None:
    names = [fault.name for fault in FAULTS]
    assert len(names) == len(set(names))
    assert set(names) == {
        "none",
        "mongodb-hang",
        "mongodb-kill",
        "redis-hang",
        "redis-kill",
        "s3-hang",
        "worker-kill",
        "tracking-kill",
        "core-kill",
        "payments-hang",
        "notifications-flaky",
    }
    assert fault_named("mongodb-hang").duration_s == FAULT_S == 20


def test_an_unknown_fault_is_named_with_the_known_ones() -> None:
    with pytest.raises(KeyError, match="mongodb-hang"):
        fault_named("dns-outage")


def test_processes_the_faults_name_are_in_the_stack(tmp_path: Path) -> None:
    ports, core_2 = free_stack_ports()
    names = {
        s.name for g in owned_groups(ports, tmp_path, settings={}, core_2_port=core_2) for s in g
    }
    acted_on = {"mongodb", "redis", "s3", "worker-documents", "tracking-1", "core", "core-2"}
    assert acted_on <= names


def test_the_background_is_the_ci_profile_scaled_to_this_machine() -> None:
    ci = profiles.parse((REPO / "tests" / "load" / "profiles.yaml").read_text(), "ci")
    background = chaos_profile(100)

    assert SCALE == 0.2
    assert background.stages == ((15.0, 1.0), (100.0, 1.0))
    for name, params in ci.scenarios.items():
        assert background.scenarios[name]["vus"] == max(1, round(params["vus"] * SCALE))
    assert background.concurrency() == {"users": 200, "uploads": 20, "tracking": 120}
