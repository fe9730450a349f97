from __future__ import annotations

from pathlib import Path

import pytest

from tripline.devstack.stack import DEFAULT_PORTS, StackPorts, stack_groups


def test_defaults_are_the_design_ports() -> None:
    ports = StackPorts.from_env({})
    assert (ports.gateway, ports.core, ports.tracking, ports.tracking_2) == (8080, 8081, 8083, 8085)
    assert (ports.backends.redis, ports.backends.mongo, ports.backends.s3) == (6380, 27018, 9000)


def test_every_port_can_be_overridden() -> None:
    env = {name: str(20000 + index) for index, name in enumerate(DEFAULT_PORTS)}
    ports = StackPorts.from_env(env)
    assert sorted(ports.all().values()) == sorted(int(value) for value in env.values())


@pytest.mark.parametrize("value", ["", "abc", "0", "70000", "-1"])
def test_a_bad_port_is_named(value: str) -> None:
    with pytest.raises(ValueError, match="GATEWAY_PORT"):
        StackPorts.from_env({"GATEWAY_PORT": value})


def test_stack_runs_two_tracking_replicas_and_gateway_spreads_over_both(tmp_path: Path) -> None:
    backends, services = stack_groups(StackPorts.from_env({}), tmp_path)
    names = [spec.name for spec in services]
    assert {"tracking-1", "tracking-2", "gateway", "worker", "core", "upload"} <= set(names)
    gateway = next(spec for spec in services if spec.name == "gateway")
    assert gateway.env["TRACKING_URLS"] == "http://127.0.0.1:8083,http://127.0.0.1:8085"
    assert [spec.name for spec in backends] == ["redis", "mongodb", "s3"]


def test_local_redis_is_durable_and_never_on_6379(tmp_path: Path) -> None:
    redis = stack_groups(StackPorts.from_env({}), tmp_path)[0][0]
    argv = list(redis.argv)
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert argv[argv.index("--port") + 1] == "6380"
