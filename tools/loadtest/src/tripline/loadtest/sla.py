"""The SLAs of ``tests/load/sla.yaml``: read once, turned into k6 thresholds, and judged against
what a run measured, each verdict saying which SLA and by how much. Pure: files come in as
text, measurements as k6's summary data."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from tripline.loadtest.routes import CLASSES

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
}


class SlaFileError(ValueError):
    """``sla.yaml`` is missing a number or holds one that is not a number."""


@dataclass(frozen=True)
class Sla:
    """One promise: ``stat`` of the k6 ``metric`` stays ``op`` ``limit`` (in the metric's own
    units; ``unit`` and ``scale`` only say how to show it)."""

    name: str
    requirement: str
    scenarios: frozenset[str]
    metric: str
    stat: str
    op: str
    limit: float
    unit: str
    scale: float = 1.0
    # A counter nobody added to is 0, not "not measured" (no 5xx, nothing lost).
    absent_is_zero: bool = False

    @property
    def threshold(self) -> str:
        """The k6 threshold expression of this SLA."""
        # Every digit: k6 must judge against the very number the runner judges against.
        limit = int(self.limit) if float(self.limit).is_integer() else self.limit
        return f"{self.stat}{self.op}{limit!r}"

    def shown(self, value: float) -> str:
        scaled = value * self.scale
        return f"{scaled:.4g} {self.unit}".rstrip()


@dataclass(frozen=True)
class SlaFile:
    """The numbers of ``sla.yaml`` the rest of the platform shares."""

    slas: tuple[Sla, ...]
    error_rate: float
    service_p95_ms: float
    regression_tolerance: float


@dataclass(frozen=True)
class Verdict:
    """An SLA judged: ``value`` None when the run did not measure it."""

    sla: Sla
    value: float | None
    ok: bool
    message: str

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.sla.name,
            "requirement": self.sla.requirement,
            "limit": self.sla.limit * self.sla.scale,
            "op": self.sla.op,
            "unit": self.sla.unit,
            "value": None if self.value is None else self.value * self.sla.scale,
            "ok": self.ok,
            "message": self.message,
        }


def _number(data: Mapping[str, Any], *path: str) -> float:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise SlaFileError(f"sla.yaml: {'.'.join(path)} is missing")
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SlaFileError(f"sla.yaml: {'.'.join(path)} must be a number, not {value!r}")
    return float(value)


def parse(text: str) -> SlaFile:
    """The SLAs of an ``sla.yaml`` text; raises :class:`SlaFileError` naming what is wrong."""
    data = yaml.safe_load(text)
    if not isinstance(data, Mapping):
        raise SlaFileError("sla.yaml must be a mapping")
    users_uploads = frozenset({"users", "uploads"})
    slas: list[Sla] = []
    for cls in CLASSES:
        scenarios = frozenset({"uploads"}) if cls == "upload" else frozenset({"users"})
        for stat in ("p95", "p99"):
            slas.append(
                Sla(
                    f"latency.{cls}.{stat}",
                    "10.4",
                    scenarios,
                    f"http_req_duration{{class:{cls}}}",
                    f"p({stat[1:]})",
                    "<=",
                    _number(data, "latency_ms", cls, stat),
                    "ms",
                )
            )
    error_rate = _number(data, "error_rate")
    slas += [
        Sla("error_rate", "10.4", users_uploads, "tl_errors", "rate", "<=", error_rate, "%", 100),
        Sla(
            "unexpected_5xx",
            "10.4",
            users_uploads,
            "tl_unexpected_5xx",
            "count",
            "<=",
            _number(data, "unexpected_5xx"),
            "responses",
            absent_is_zero=True,
        ),
        Sla(
            "sos_success",
            "Property 6",
            frozenset({"users", "tracking"}),
            "tl_sos_ok",
            "rate",
            ">=",
            _number(data, "sos_success"),
            "%",
            100,
        ),
        Sla(
            "delivery.p99",
            "Property 2, 10.3",
            frozenset({"tracking"}),
            "tl_delivery_ms",
            "p(99)",
            "<=",
            _number(data, "delivery_p99_ms"),
            "ms",
        ),
        Sla(
            "lost_events",
            "Property 1, 10.3",
            frozenset({"tracking"}),
            "tl_events_lost",
            "count",
            "<=",
            _number(data, "lost_events"),
            "events",
            absent_is_zero=True,
        ),
        Sla(
            "upload_verdict.p95",
            "10.2",
            frozenset({"uploads"}),
            "tl_upload_verdict_ms",
            "p(95)",
            "<=",
            _number(data, "upload_verdict_p95_s") * 1000,
            "s",
            0.001,
        ),
    ]
    return SlaFile(
        tuple(slas),
        error_rate,
        _number(data, "service_p95_ms"),
        _number(data, "regression_tolerance"),
    )


def applicable(slas: Iterable[Sla], scenarios: Iterable[str]) -> list[Sla]:
    """The SLAs that the scenarios of a run measure."""
    running = set(scenarios)
    return [sla for sla in slas if sla.scenarios & running]


def k6_thresholds(slas: Iterable[Sla]) -> dict[str, list[str]]:
    """k6's ``options.thresholds`` for ``slas``: a breach fails the k6 run (exit code 99)."""
    thresholds: dict[str, list[str]] = {}
    for sla in slas:
        thresholds.setdefault(sla.metric, []).append(sla.threshold)
    return thresholds


def measured(metrics: Mapping[str, Any], sla: Sla) -> float | None:
    """The value of ``sla``'s statistic in k6's summary ``metrics``, None when absent."""
    entry = metrics.get(sla.metric)
    values = entry.get("values", {}) if isinstance(entry, Mapping) else {}
    if values.get("count") == 0 and sla.stat.startswith("p("):
        # k6 reports a trend's percentiles as 0 when it has no samples: nothing was measured.
        return None
    value = values.get(sla.stat)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0 if sla.absent_is_zero else None


def judge(sla: Sla, value: float | None) -> Verdict:
    """The verdict on one SLA: a breach says by how much; an unmeasured SLA fails, since a
    run that did not measure a promise has not shown it is kept."""
    if value is None:
        return Verdict(sla, None, False, f"{sla.name}: not measured ({sla.metric} has no samples)")
    limit = sla.shown(sla.limit)
    if OPERATORS[sla.op](value, sla.limit):
        return Verdict(sla, value, True, f"{sla.name}: {sla.shown(value)} {sla.op} {limit}")
    by = abs(value - sla.limit)
    relative = f" ({by / sla.limit:.0%} over)" if sla.limit and sla.op == "<=" else ""
    return Verdict(
        sla,
        value,
        False,
        f"{sla.name} breached: {sla.shown(value)}, limit {sla.op} {limit}, "
        f"off by {sla.shown(by)}{relative}",
    )


def evaluate(slas: Iterable[Sla], k6_summary: Mapping[str, Any]) -> list[Verdict]:
    """Every SLA of ``slas`` judged against a k6 summary (``handleSummary``'s data)."""
    metrics = k6_summary.get("metrics", {})
    return [judge(sla, measured(metrics, sla)) for sla in slas]
