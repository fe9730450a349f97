"""The release workflow (.github/workflows/release.yml): actionlint and GitHub's workflow schema
accept it, and it keeps its promises: tests, then one image per service folder, then staging,
whose rollout and ``ci`` load test gate prod; the overlays it applies exist and their images are
the ones it built; its reports are kept even when the gate fails; releases never overlap; it
holds no more permissions than reading the repository."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
OVERLAYS_DIR = ROOT / "deploy" / "k8s" / "overlays"
# The venv's own binaries (dev dependencies): make install puts them there, so a missing one is a
# broken install, which fails the test rather than skipping it.
BIN = Path(sys.executable).parent

# Each deploying job and the overlay it must apply.
DEPLOYS = {"staging": "staging", "prod": "prod"}
ENVIRONMENTS = {"staging": "staging", "prod": "production"}
# The secrets each deploying job may read: its own cluster's, and nothing of the other's.
SECRETS = {"staging": {"STAGING_KUBECONFIG", "STAGING_JWT_SECRET"}, "prod": {"PROD_KUBECONFIG"}}

Job = dict[str, Any]
Step = dict[str, Any]

# ``$NAME`` and ``${NAME}``, not ``${{ expression }}`` nor ``${array[@]}``.
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
EXPRESSION = re.compile(r"^\$\{\{\s*(.*?)\s*\}\}$")
SECRET = re.compile(r"\bsecrets\.(\w+)")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@(v\d+|[0-9a-f]{40})$")


def binary(name: str) -> Path:
    path = BIN / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: {name} is a dev dependency, installed by make install")
    return path


@cache
def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def triggers() -> dict[str, Any]:
    # YAML 1.1 reads the key ``on`` as the boolean true.
    found: dict[str, Any] = workflow()["on" if "on" in workflow() else True]
    return found


def job(name: str) -> Job:
    jobs: dict[str, Job] = workflow()["jobs"]
    assert name in jobs, f"the workflow has no job {name}"
    return jobs[name]


def needs(name: str) -> set[str]:
    value = job(name).get("needs", [])
    return {value} if isinstance(value, str) else set(value)


def environment(name: str) -> str | None:
    value = job(name).get("environment")
    found: str | None = value.get("name") if isinstance(value, dict) else value
    return found


def expression(value: object) -> str:
    """The expression inside ``${{ }}``, or the value itself."""
    text = str(value).strip()
    match = EXPRESSION.match(text)
    return match.group(1) if match else text


def service_folders() -> set[str]:
    """Every service under services/, from the filesystem: each folder with a package."""
    return {path.parent.name for path in (ROOT / "services").glob("*/pyproject.toml")}


def overlay_file(overlay: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        (OVERLAYS_DIR / overlay / "kustomization.yaml").read_text()
    )
    return loaded


def env_of(name: str, step: Step) -> dict[str, str]:
    """The variables a step's shell sees from the workflow: the workflow's, then the job's, then
    the step's own."""
    return {
        key: str(value)
        for scope in (workflow(), job(name), step)
        for key, value in scope.get("env", {}).items()
    }


def expand(text: str, env: dict[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` replaced with what the workflow sets them to; others are left."""

    def value(match: re.Match[str]) -> str:
        variable = match.group(1) or match.group(2)
        return env.get(variable, match.group(0))

    return VARIABLE.sub(value, text)


def lines(name: str, step: Step) -> list[str]:
    """A run step's logical lines (continuations joined), its variables expanded."""
    joined = re.sub(r"\\\n\s*", " ", str(step.get("run", "")))
    env = env_of(name, step)
    return [expand(line.strip(), env) for line in joined.splitlines() if line.strip()]


def runs(name: str, *words: str) -> list[tuple[int, list[str]]]:
    """``(step index, words)`` of every command line in job ``name`` that holds each of
    ``words`` as a word of its own, split as the shell would."""
    found = []
    for index, step in enumerate(job(name)["steps"]):
        for line in lines(name, step):
            if not all(word in line for word in words):
                continue
            split = shlex.split(line)
            if all(word in split for word in words):
                found.append((index, split))
    return found


def only(name: str, *words: str) -> tuple[int, list[str]]:
    found = runs(name, *words)
    assert len(found) == 1, f"job {name}: {len(found)} command lines with {' '.join(words)}"
    return found[0]


def argument(words: list[str], *flags: str) -> str:
    """The value of the first of ``flags`` in ``words`` (``-k PATH`` or ``-k=PATH``)."""
    for index, word in enumerate(words):
        for flag in flags:
            if word == flag:
                return words[index + 1]
            if word.startswith(f"{flag}="):
                return word.removeprefix(f"{flag}=")
    raise AssertionError(f"none of {flags} in {' '.join(words)}")


def uses(name: str, action: str) -> list[tuple[int, Step]]:
    return [
        (index, step)
        for index, step in enumerate(job(name)["steps"])
        if str(step.get("uses", "")).split("@")[0] == action
    ]


# The linters


def test_actionlint_accepts_the_workflow() -> None:
    """actionlint wants the workflow inside a git checkout: it runs from the repository root."""
    result = subprocess.run(
        [str(binary("actionlint")), "-no-color", str(WORKFLOW.relative_to(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflow_matches_githubs_schema() -> None:
    result = subprocess.run(
        [
            str(binary("check-jsonschema")),
            "--builtin-schema",
            "vendor.github-workflows",
            str(WORKFLOW),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# When and in which order


def test_it_runs_on_every_push_to_main_and_by_hand() -> None:
    assert triggers()["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in triggers()


def test_each_stage_waits_for_the_one_before() -> None:
    assert needs("test") == set()
    assert needs("images") == {"test"}
    assert needs("staging") == {"images"}
    assert needs("prod") == {"staging"}


def test_only_main_is_shipped() -> None:
    """A manual run on another branch is tested, but builds nothing; staging and prod need the
    images, so they are skipped with them."""
    assert "refs/heads/main" in expression(job("images").get("if", ""))
    assert "if" not in job("staging")
    assert "if" not in job("prod")


def test_the_test_job_runs_what_ci_runs() -> None:
    assert runs("test", "bash", ".ci/run")


@pytest.mark.parametrize(("name", "expected"), ENVIRONMENTS.items())
def test_deploys_run_in_their_github_environment(name: str, expected: str) -> None:
    assert environment(name) == expected


# Images


def test_every_service_folder_gets_an_image() -> None:
    assert set(job("images")["strategy"]["matrix"]["service"]) == service_folders()


def test_each_image_is_its_services_target_pushed_under_the_commit() -> None:
    _, build = only("images", "buildx", "build")
    service = "${{ matrix.service }}"
    assert argument(build, "--target") == service
    assert argument(build, "--build-arg") == f"SERVICE={service}"
    assert argument(build, "--tag", "-t") == (
        "${{ vars.REGISTRY }}/tripline/" + service + ":${{ github.sha }}"
    )
    assert "--push" in build
    assert build[-1] == ".", "the root Dockerfile's context is the repository"
    assert "--file" not in build
    assert "-f" not in build


@pytest.mark.parametrize("overlay", DEPLOYS.values())
def test_every_image_an_overlay_deploys_is_built(overlay: str) -> None:
    images = {image["name"] for image in overlay_file(overlay)["images"]}
    unbuilt = sorted(images - {f"tripline/{service}" for service in service_folders()})
    assert not unbuilt, unbuilt


# Deploying


@pytest.mark.parametrize(("name", "overlay"), DEPLOYS.items())
def test_the_overlay_applied_exists_and_gets_this_commits_images(name: str, overlay: str) -> None:
    applied_at, apply = only(name, "apply", "-k")
    path = argument(apply, "-k")
    assert path == f"deploy/k8s/overlays/{overlay}"
    assert (ROOT / path / "kustomization.yaml").is_file(), f"{path} is not a Kustomize overlay"
    # The tags are set in that same overlay before it is applied.
    edited_at, _ = only(name, "kustomize", "edit", "set", "image")
    moves = [
        shlex.split(line)
        for line in lines(name, job(name)["steps"][edited_at])
        if line.startswith("cd ")
    ]
    assert moves == [["cd", path]], "the tags are set in another folder"
    assert edited_at < applied_at


def test_staging_and_prod_get_every_service_as_built() -> None:
    """Both overlays are set to one image per service folder (the folders' own glob), each the
    name and tag the images job pushed: prod runs what staging ran."""

    def edits(name: str) -> list[str]:
        index, _ = only(name, "kustomize", "edit", "set", "image")
        return [
            line for line in lines(name, job(name)["steps"][index]) if not line.startswith("cd ")
        ]

    staging = edits("staging")
    assert staging == edits("prod")
    assert "for manifest in services/*/pyproject.toml; do" in staging
    assert 'service=$(basename "$(dirname "$manifest")")' in staging
    pushed = "${{ vars.REGISTRY }}/tripline/$service:${{ github.sha }}"
    assert f'images+=("tripline/$service={pushed}")' in staging


@pytest.mark.parametrize(("name", "overlay"), DEPLOYS.items())
def test_every_deployment_of_the_overlay_is_awaited(name: str, overlay: str) -> None:
    applied_at, _ = only(name, "apply", "-k")
    awaited_at, rollout = only(name, "rollout", "status")
    listed_at, listing = only(name, "get", "deployments")
    assert applied_at < listed_at <= awaited_at
    assert argument(rollout, "--timeout"), "an unbounded wait"
    namespace = overlay_file(overlay)["namespace"]
    assert argument(listing, "-n", "--namespace") == namespace
    assert argument(rollout, "-n", "--namespace") == namespace


@pytest.mark.parametrize("name", DEPLOYS)
def test_the_kubeconfig_comes_from_the_jobs_own_secrets(name: str) -> None:
    assert set(SECRET.findall(yaml.safe_dump(job(name)))) == SECRETS[name]
    assert runs(name, "KUBECONFIG=$RUNNER_TEMP/kubeconfig")


# The gate


def test_staging_runs_the_ci_load_test_against_staging() -> None:
    awaited_at, _ = only("staging", "rollout", "status")
    tested_at, command = only("staging", "make", "loadtest")
    assert "PROFILE=ci" in command
    targets = [word.removeprefix("TARGET=") for word in command if word.startswith("TARGET=")]
    assert targets == ["${{ vars.STAGING_URL }}"]
    step = job("staging")["steps"][tested_at]
    assert expression(step["env"]["JWT_SECRET"]) == "secrets.STAGING_JWT_SECRET"
    assert awaited_at < tested_at, "the load test starts before the rollout is over"
    # A failure must fail the job, so that prod, which needs it, does not run.
    assert not step.get("continue-on-error")
    assert "if" not in step


def test_the_load_test_reports_are_kept_even_when_it_fails() -> None:
    tested_at, _ = only("staging", "make", "loadtest")
    uploads = uses("staging", "actions/upload-artifact")
    assert len(uploads) == 1
    uploaded_at, upload = uploads[0]
    assert expression(upload["if"]) == "always()"
    assert upload["with"]["path"].rstrip("/") == ".loadtest/runs"
    # upload-artifact leaves out anything under a folder whose name starts with a dot.
    assert upload["with"]["include-hidden-files"] is True
    assert tested_at < uploaded_at


# Safety


def test_releases_never_overlap() -> None:
    concurrency = workflow()["concurrency"]
    assert isinstance(concurrency, dict)
    assert "${{" not in str(concurrency["group"]), "a group per ref lets two releases deploy"
    assert concurrency.get("cancel-in-progress", False) is False, "a rollout cut off halfway"


def test_permissions_only_read() -> None:
    scopes = {"workflow": workflow().get("permissions")}
    scopes |= {
        name: spec["permissions"]
        for name, spec in workflow()["jobs"].items()
        if "permissions" in spec
    }
    assert isinstance(scopes["workflow"], dict), "unset, GITHUB_TOKEN gets the default scopes"
    too_wide = {
        scope: permissions
        for scope, permissions in scopes.items()
        if not isinstance(permissions, dict)
        or any(level not in {"read", "none"} for level in permissions.values())
    }
    assert not too_wide, too_wide


def test_actions_are_pinned_to_a_major_version_or_a_commit() -> None:
    unpinned = [
        f"{name}: {step['uses']}"
        for name, spec in workflow()["jobs"].items()
        for step in spec["steps"]
        if "uses" in step and not PINNED.match(step["uses"])
    ]
    assert not unpinned, unpinned


def test_checkouts_keep_no_token() -> None:
    kept = [
        name
        for name in workflow()["jobs"]
        for _, step in uses(name, "actions/checkout")
        if step.get("with", {}).get("persist-credentials") is not False
    ]
    assert not kept, kept
