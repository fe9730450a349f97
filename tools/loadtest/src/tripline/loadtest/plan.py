"""The plan of one run: everything the k6 scripts read (``tests/load/k6/lib/plan.js``), as one
JSON document. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tripline.loadtest.profiles import Profile, k6_scenarios, scenario_params, setup_timeout_s
from tripline.loadtest.routes import MEASURED_CLASSES, STORAGE, route_map
from tripline.loadtest.sla import Sla, applicable, k6_thresholds

PRIORITIES = ("critical", "normal", "low", STORAGE)
OUTCOMES = ("ok", "limited", "shed", "conflict", "error")
# Statuses the report shows one by one; others are still counted in tl_status, unsplit.
STATUSES = (0, 200, 201, 202, 204, 400, 401, 403, 404, 409, 413, 422, 429, 500, 502, 503, 504)
STEPS = {
    "tl_trips": ("requested", "accepted", "completed", "paid"),
    "tl_uploads": ("presigned", "completed", "verdict", "timed_out"),
}
VERDICTS = ("verified", "rejected", "failed")


@dataclass(frozen=True)
class Document:
    """A real file the uploads scenario sends."""

    path: str
    name: str
    content_type: str
    size: int


def reported_submetrics() -> dict[str, list[str]]:
    """Thresholds that always hold, only so that k6 keeps these tagged submetrics in its
    summary: latency per class, answers per priority and outcome, per status, per step."""
    always: dict[str, list[str]] = {}
    for cls in MEASURED_CLASSES:
        always[f"http_req_duration{{class:{cls}}}"] = ["max>=0"]
    for priority in PRIORITIES:
        for outcome in OUTCOMES:
            always[f"tl_responses{{priority:{priority},outcome:{outcome}}}"] = ["count>=0"]
    for status in STATUSES:
        always[f"tl_status{{status:{status}}}"] = ["count>=0"]
    for metric, steps in STEPS.items():
        for step in steps:
            always[f"{metric}{{step:{step}}}"] = ["count>=0"]
    for verdict in VERDICTS:
        always[f"tl_uploads{{verdict:{verdict}}}"] = ["count>=0"]
    return always


def build(
    *,
    run_id: str,
    profile: Profile,
    slas: Iterable[Sla],
    base_url: str,
    ws_urls: Sequence[str],
    auth_mode: str,
    documents: Sequence[Document],
    summary_path: str,
) -> dict[str, Any]:
    """The plan for k6. ``auth_mode`` is ``secret`` (tokens signed with JWT_SECRET from the
    environment) or ``file`` (TOKENS_FILE)."""
    thresholds = reported_submetrics()
    for metric, expressions in k6_thresholds(applicable(slas, profile.scenarios)).items():
        thresholds[metric] = [*thresholds.get(metric, []), *expressions]
    params = scenario_params(profile)
    if "uploads" in params:
        params["uploads"]["files"] = [
            {"path": d.path, "name": d.name, "content_type": d.content_type, "size": d.size}
            for d in documents
        ]
    trips = profile.peak("tracking") if "tracking" in profile.scenarios else 0
    if trips:
        params["tracking"]["trips"] = trips
    return {
        "run_id": run_id,
        "profile": profile.name,
        "base_url": base_url.rstrip("/"),
        "ws_urls": [url.rstrip("/") for url in ws_urls],
        "city": dict(profile.city),
        "auth": {"mode": auth_mode},
        "routes": route_map(),
        "scenarios": {name: {"params": value} for name, value in params.items()},
        "summary_path": summary_path,
        "k6": {
            "scenarios": k6_scenarios(profile),
            "thresholds": thresholds,
            "setup_timeout": f"{setup_timeout_s(profile)}s",
        },
    }
