from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripline.common.platform import (
    CRITICAL_DEPENDENCIES,
    CRITICAL_SERVICES,
    Status,
    platform_status,
    service_status,
)

SERVICES = ("gateway", "core", "upload", "tracking")
DEPENDENCIES = ("mongodb", "redis", "s3", "queues")
ALL_OK: dict[str, Status] = dict.fromkeys(SERVICES, "ok")
ALL_UP = dict.fromkeys(DEPENDENCIES, True)


@pytest.mark.parametrize(
    ("ready", "expected"),
    [
        ([True], "ok"),
        ([True, True], "ok"),
        ([False], "down"),
        ([], "down"),
        ([True, False], "degraded"),
    ],
)
def test_service_status(ready: list[bool], expected: Status) -> None:
    assert service_status(ready) == expected


def test_everything_up_is_ok() -> None:
    assert platform_status(ALL_OK, ALL_UP) == "ok"


def test_mongodb_down_is_down() -> None:
    assert platform_status(ALL_OK, {**ALL_UP, "mongodb": False}) == "down"


@pytest.mark.parametrize("dependency", ["redis", "s3", "queues"])
def test_other_dependencies_down_are_degraded(dependency: str) -> None:
    assert platform_status(ALL_OK, {**ALL_UP, dependency: False}) == "degraded"


def test_core_without_a_ready_replica_is_down() -> None:
    assert platform_status({**ALL_OK, "core": "down"}, ALL_UP) == "down"


@pytest.mark.parametrize("service", ["gateway", "upload", "tracking"])
def test_other_services_down_are_degraded(service: str) -> None:
    assert platform_status({**ALL_OK, service: "down"}, ALL_UP) == "degraded"


@given(
    st.fixed_dictionaries({name: st.sampled_from(["ok", "degraded", "down"]) for name in SERVICES}),
    st.fixed_dictionaries({name: st.booleans() for name in DEPENDENCIES}),
)
def test_the_rule(services: dict[str, Status], dependencies: dict[str, bool]) -> None:
    if any(services[name] == "down" for name in CRITICAL_SERVICES) or any(
        not dependencies[name] for name in CRITICAL_DEPENDENCIES
    ):
        expected = "down"
    elif all(state == "ok" for state in services.values()) and all(dependencies.values()):
        expected = "ok"
    else:
        expected = "degraded"
    assert platform_status(services, dependencies) == expected
