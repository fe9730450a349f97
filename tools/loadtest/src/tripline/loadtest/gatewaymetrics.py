"""What a platform sample keeps of the gateway's Prometheus text: the shedding level, admission
by priority, and answers and latency per route class (the gateway labels its metrics with the
route table's patterns; :mod:`tripline.loadtest.routes` maps them to classes). Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tripline.loadtest.routes import pattern_classes

LATENCY = "http_request_duration_seconds"


def parse(text: str, classes: Mapping[tuple[str, str], str] | None = None) -> dict[str, Any]:
    """``{"shedding_level", "admission": {"<priority>/<outcome>": n}, "responses": {class:
    {status: n}}, "latency": {class: {"buckets": [[le, n], ...], "count": n}}}``, counters
    cumulative as the gateway reports them. Routes that are no class (probes, metrics) are
    left out."""
    classes = pattern_classes() if classes is None else classes
    shedding: float | None = None
    admission: dict[str, float] = {}
    responses: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "gateway_shedding_level":
                shedding = sample.value
            elif sample.name == "gateway_admission_total":
                admission[f"{labels['priority']}/{labels['outcome']}"] = sample.value
            elif sample.name.startswith(LATENCY) and labels.get("service") == "gateway":
                cls = classes.get((labels.get("method", ""), labels.get("route", "")))
                if cls is None:
                    continue
                if sample.name == f"{LATENCY}_bucket":
                    buckets[cls][float(labels["le"])] += sample.value
                elif sample.name == f"{LATENCY}_count":
                    counts[cls] += sample.value
                    responses[cls][labels["status"]] += sample.value
    return {
        "shedding_level": shedding,
        "admission": admission,
        "responses": {cls: dict(by_status) for cls, by_status in responses.items()},
        "latency": {
            cls: {"buckets": sorted(bounds.items()), "count": counts[cls]}
            for cls, bounds in buckets.items()
        },
    }
