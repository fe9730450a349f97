"""The owned stack's specs: the local stack's own processes, with settings and a second core
replica added (starting it for real is what the chaos suite does, tests/chaos)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tripline.devstack.ownedstack import free_stack_ports, owned_groups, start_owned_stack
from tripline.devstack.stack import stack_groups, url


def test_without_a_second_core_it_is_the_local_stack_with_settings_added(tmp_path: Path) -> None:
    ports, _ = free_stack_ports()
    local = stack_groups(ports, tmp_path / "data")
    owned = owned_groups(ports, tmp_path, settings={"LOG_LEVEL": "WARNING"})

    assert [[s.name for s in group] for group in owned] == [[s.name for s in g] for g in local]
    assert [s.argv for s in owned[0]] == [s.argv for s in local[0]]
    for mine, theirs in zip(owned[1], local[1], strict=True):
        assert mine.argv == theirs.argv
        assert mine.env == {**theirs.env, "LOG_LEVEL": "WARNING"}


def test_a_second_core_is_watched_and_offered_to_the_gateway(tmp_path: Path) -> None:
    ports, core_2 = free_stack_ports()
    assert core_2 not in ports.all().values()

    services = {
        s.name: s for s in owned_groups(ports, tmp_path, settings={}, core_2_port=core_2)[1]
    }

    second = services["core-2"]
    assert second.env["PORT"] == str(core_2)
    assert second.env["INSTANCE_ID"] == "core-2"
    assert services["gateway"].env["CORE_URL"] == url(ports.core)
    assert services["gateway"].env["CORE_URLS"] == f"{url(ports.core)},{url(core_2)}"
    assert all(f"core={url(core_2)}" in s.env["MONITOR_TARGETS"] for s in services.values())
    assert list(services)[-1] == "gateway"


def test_the_redis_of_the_owned_stack_is_durable(tmp_path: Path) -> None:
    ports, _ = free_stack_ports()
    redis = owned_groups(ports, tmp_path, settings={})[0][0]
    argv = list(redis.argv)
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert argv[argv.index("--dir") + 1] == str(tmp_path / "data" / "redis")


async def test_a_third_core_replica_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="core replicas"):
        await start_owned_stack(tmp_path, core_replicas=3)
