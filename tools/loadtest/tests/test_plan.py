"""The plan k6 reads: built from the real profiles and SLAs, and checked against the k6 scripts
themselves, so that a script cannot call a route the gateway does not have, read a parameter the
plan does not give, or be judged on a metric it does not declare."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tripline.gateway.routetable import ROUTES
from tripline.gateway.shedding import Priority
from tripline.loadtest.plan import Document, build, reported_submetrics
from tripline.loadtest.profiles import Profile
from tripline.loadtest.profiles import parse as parse_profile
from tripline.loadtest.routes import CLASSES, route_class, route_map
from tripline.loadtest.sla import Sla, applicable, k6_thresholds
from tripline.loadtest.sla import parse as parse_sla

REPO = Path(__file__).resolve().parents[3]
LOAD = REPO / "tests" / "load"
K6 = LOAD / "k6"
PROFILES_TEXT = (LOAD / "profiles.yaml").read_text()
SLAS = parse_sla((LOAD / "sla.yaml").read_text()).slas
PROFILE_NAMES = sorted(yaml.safe_load(PROFILES_TEXT)["profiles"])
DOCUMENTS = (
    Document("/data/docs/license-photo.jpg", "license-photo.jpg", "image/jpeg", 221_000),
    Document("/data/docs/insurance.pdf", "insurance.pdf", "application/pdf", 349_500),
)

# `call(who, 'POST', '/api/trips/{trip_id}/status', ...)`, the arguments on one line or several.
CALL = re.compile(r"\bcall\(\s*\w+\s*,\s*'(?P<method>[A-Z]+)'\s*,\s*'(?P<pattern>[^']+)'")
ANY_CALL = re.compile(r"(?<![\w.])call\(")
DECLARED = re.compile(r"new\s+(?P<type>Counter|Rate|Trend|Gauge)\(\s*'(?P<name>\w+)'")
# What k6 can aggregate per metric type (and what the plan's thresholds may use).
STATS = {
    "Counter": re.compile(r"count|rate"),
    "Rate": re.compile(r"rate"),
    "Trend": re.compile(r"avg|min|max|med|p\(\d+(\.\d+)?\)"),
    "Gauge": re.compile(r"value"),
}
BUILTIN = {"http_req_duration": "Trend"}


def profile(name: str) -> Profile:
    return parse_profile(PROFILES_TEXT, name)


def tracking_only() -> Profile:
    defaults = yaml.safe_dump({"defaults": yaml.safe_load(PROFILES_TEXT)["defaults"]})
    body = """
        profiles:
          watch:
            description: tracking alone
            stages: [[10, 0.5], [20, 1.0]]
            tracking: {vus: 25}
    """
    return parse_profile(defaults + textwrap.dedent(body), "watch")


def plan_of(
    profile: Profile,
    *,
    base_url: str = "http://127.0.0.1:18480",
    ws_urls: tuple[str, ...] = ("ws://127.0.0.1:18483", "ws://127.0.0.1:18485"),
    slas: tuple[Sla, ...] = SLAS,
) -> dict[str, Any]:
    return build(
        run_id="lt20261205234000",
        profile=profile,
        slas=slas,
        base_url=base_url,
        ws_urls=ws_urls,
        auth_mode="secret",
        documents=DOCUMENTS,
        summary_path="/runs/smoke/k6-summary.json",
    )


def scripts() -> list[Path]:
    found = sorted(K6.rglob("*.js"))
    assert found
    return found


def declared_metrics() -> dict[str, str]:
    """``{name: type}`` of the metrics ``tests/load/k6/lib/metrics.js`` declares."""
    text = (K6 / "lib" / "metrics.js").read_text()
    return {m["name"]: m["type"] for m in DECLARED.finditer(text)}


def base_metric(name: str) -> str:
    return name.split("{", 1)[0]


# What build() gives


def test_every_gateway_route_is_in_the_plan_with_its_class_and_priority() -> None:
    routes = plan_of(profile("smoke"))["routes"]
    expected = {f"{m} {route.pattern}" for route in ROUTES for m in route.methods}
    assert set(routes) == expected
    priorities = {p.value for p in Priority}
    for route in ROUTES:
        for method in route.methods:
            entry = routes[f"{method} {route.pattern}"]
            assert entry == {"class": route_class(route), "priority": route.priority.value}
            assert entry["class"] in CLASSES
            assert entry["priority"] in priorities


def test_thresholds_hold_the_slas_of_every_scenario_of_the_profile() -> None:
    smoke = profile("smoke")
    thresholds = plan_of(smoke)["k6"]["thresholds"]
    for metric, expressions in k6_thresholds(applicable(SLAS, smoke.scenarios)).items():
        assert [e for e in thresholds[metric] if e in expressions] == expressions, metric
    assert thresholds["http_req_duration{class:read}"] == ["max>=0", "p(95)<=300", "p(99)<=800"]
    assert thresholds["tl_sos_ok"] == ["rate>=1"]


def test_thresholds_leave_out_the_slas_of_scenarios_the_profile_does_not_run() -> None:
    thresholds = plan_of(tracking_only())["k6"]["thresholds"]
    tracking = {sla.metric for sla in SLAS if "tracking" in sla.scenarios}
    others = {sla.metric for sla in SLAS} - tracking
    assert tracking <= set(thresholds)
    for metric in others:
        # At most the always-true expression that keeps a reported submetric.
        assert thresholds.get(metric, []) == reported_submetrics().get(metric, []), metric
    assert thresholds["http_req_duration{class:read}"] == ["max>=0"]
    assert "tl_errors" not in thresholds
    assert thresholds["tl_delivery_ms"] == ["p(99)<=1000"]
    assert thresholds["tl_events_lost"] == ["count<=0"]


def test_thresholds_keep_every_reported_submetric_with_an_always_true_expression() -> None:
    reported = reported_submetrics()
    for name in ("tracking", "smoke"):
        plan = plan_of(tracking_only() if name == "tracking" else profile(name))
        thresholds = plan["k6"]["thresholds"]
        for metric, always in reported.items():
            assert thresholds[metric][: len(always)] == always, metric
    assert {e for expressions in reported.values() for e in expressions} == {"count>=0", "max>=0"}
    for cls in (*CLASSES, "storage"):
        assert f"http_req_duration{{class:{cls}}}" in reported
    assert "tl_responses{priority:normal,outcome:shed}" in reported
    assert "tl_status{status:503}" in reported
    assert "tl_uploads{verdict:rejected}" in reported


def test_without_slas_the_plan_has_only_the_reported_submetrics() -> None:
    assert plan_of(profile("smoke"), slas=())["k6"]["thresholds"] == reported_submetrics()


def test_uploads_get_the_documents_list() -> None:
    params = plan_of(profile("smoke"))["scenarios"]["uploads"]["params"]
    assert params["files"] == [
        {
            "path": "/data/docs/license-photo.jpg",
            "name": "license-photo.jpg",
            "content_type": "image/jpeg",
            "size": 221_000,
        },
        {
            "path": "/data/docs/insurance.pdf",
            "name": "insurance.pdf",
            "content_type": "application/pdf",
            "size": 349_500,
        },
    ]
    assert "files" not in plan_of(profile("smoke"))["scenarios"]["users"]["params"]


@pytest.mark.parametrize(("name", "trips"), [("smoke", 10), ("spike", 300), ("full", 300)])
def test_tracking_gets_one_trip_per_peak_vu(name: str, trips: int) -> None:
    prof = profile(name)
    plan = plan_of(prof)
    assert prof.peak("tracking") == trips
    assert plan["scenarios"]["tracking"]["params"]["trips"] == trips
    # Setup makes every trip before the run: its timeout grows with them.
    assert plan["k6"]["setup_timeout"] == f"{60 + trips // 5}s"


def test_a_profile_without_tracking_gets_no_trips_and_the_base_setup_timeout() -> None:
    defaults = yaml.safe_dump({"defaults": yaml.safe_load(PROFILES_TEXT)["defaults"]})
    body = "profiles:\n  solo:\n    stages: [[10, 1.0]]\n    users: {vus: 2}\n"
    plan = plan_of(parse_profile(defaults + body, "solo"))
    assert set(plan["scenarios"]) == {"users"}
    assert plan["k6"]["setup_timeout"] == "60s"


def test_base_and_socket_urls_lose_their_trailing_slash() -> None:
    plan = plan_of(
        profile("smoke"),
        base_url="https://api.tripline.example/",
        ws_urls=("wss://api.tripline.example/", "ws://10.0.0.7:8083"),
    )
    assert plan["base_url"] == "https://api.tripline.example"
    assert plan["ws_urls"] == ["wss://api.tripline.example", "ws://10.0.0.7:8083"]


def test_the_plan_carries_the_run_the_city_the_auth_and_the_k6_scenarios() -> None:
    smoke = profile("smoke")
    plan = plan_of(smoke)
    assert plan["run_id"] == "lt20261205234000"
    assert plan["profile"] == "smoke"
    assert plan["city"] == dict(smoke.city)
    assert plan["auth"] == {"mode": "secret"}
    assert plan["summary_path"] == "/runs/smoke/k6-summary.json"
    assert set(plan["k6"]["scenarios"]) == set(plan["scenarios"]) == set(smoke.scenarios)
    for name, scenario in plan["scenarios"].items():
        assert scenario["params"]["total_s"] == smoke.duration_s
        assert scenario["params"]["vus"] == smoke.scenarios[name]["vus"]


def test_building_a_plan_leaves_the_profile_as_it_was() -> None:
    smoke = profile("smoke")
    first = plan_of(smoke)
    assert "files" not in smoke.scenarios["uploads"]
    assert "trips" not in smoke.scenarios["tracking"]
    assert plan_of(smoke) == first


# The k6 scripts against the plan


def script_calls() -> list[tuple[str, str, str]]:
    """``(file, method, pattern)`` of every ``call(who, 'METHOD', '/pattern', ...)``."""
    return [
        (path.relative_to(K6).as_posix(), m["method"], m["pattern"])
        for path in scripts()
        for m in CALL.finditer(path.read_text())
    ]


def test_the_scripts_call_through_the_contract() -> None:
    calls = script_calls()
    assert len(calls) >= 15
    assert {file for file, _, _ in calls} >= {"users.js", "uploads.js"}


def test_every_call_of_the_scripts_is_read_by_the_pattern() -> None:
    # A call written another way (a variable for the method) would escape the check below.
    for path in scripts():
        text = path.read_text()
        found = len(CALL.findall(text))
        written = len(ANY_CALL.findall(text)) - len(re.findall(r"function\s+call\(", text))
        assert found == written, path.name


def test_every_call_of_the_scripts_names_a_route_of_the_gateway() -> None:
    routes = route_map()
    unknown = [
        f"{file}: {method} {pattern}"
        for file, method, pattern in script_calls()
        if f"{method} {pattern}" not in routes
    ]
    assert unknown == []


def test_every_metric_the_slas_use_is_declared_in_metrics_js() -> None:
    declared = declared_metrics()
    used = {base_metric(sla.metric) for sla in SLAS if sla.metric.startswith("tl_")}
    assert used
    assert sorted(used - set(declared)) == []


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_every_threshold_is_on_a_declared_metric_with_a_stat_of_its_type(name: str) -> None:
    types = {**declared_metrics(), **BUILTIN}
    for metric, expressions in plan_of(profile(name))["k6"]["thresholds"].items():
        kind = types.get(base_metric(metric))
        assert kind is not None, f"{metric} is neither built into k6 nor declared in metrics.js"
        for expression in expressions:
            stat = re.split(r"<=|>=|<|>|==|!=", expression, maxsplit=1)[0]
            assert STATS[kind].fullmatch(stat), f"{metric} ({kind}): {expression}"


def code_of(path: Path) -> str:
    """A script without its comments and quoted strings (template literals stay: they hold
    code in ``${...}``)."""
    text = re.sub(r"(^|\s)//.*$", "", path.read_text(), flags=re.MULTILINE)
    return re.sub(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"", "''", text)


def script_reads(path: Path, variable: str) -> set[str]:
    return set(re.findall(rf"(?<![\w.]){variable}\.(\w+)", code_of(path)))


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_every_parameter_a_script_reads_is_in_the_plan(name: str) -> None:
    plan = plan_of(profile(name))
    readers = {
        "users": ("users.js", "p"),
        "uploads": ("uploads.js", "P"),
        "tracking": ("tracking.js", "P"),
    }
    for scenario, (script, variable) in readers.items():
        if scenario not in plan["scenarios"]:
            continue
        params = plan["scenarios"][scenario]["params"]
        read = script_reads(K6 / script, variable)
        assert read
        assert sorted(read - set(params)) == [], f"{script} reads what the {name} plan lacks"
    assert "total_s" in script_reads(K6 / "lib" / "plan.js", "p")


def test_every_plan_field_the_scripts_read_is_built() -> None:
    plan = plan_of(profile("smoke"))
    read = set().union(*(script_reads(path, "plan") for path in scripts()))
    assert {"routes", "base_url", "k6"} <= read
    assert sorted(read - set(plan)) == []
    assert set(plan["k6"]) >= {"scenarios", "thresholds", "setup_timeout"}
