"""The release gate's regression check: a run's figures as ratios to the reference measured in
the same run, against the committed baseline (``tests/load/baseline.json``) with a tolerance.
Correctness is not judged here but by the SLAs, hard; this catches a platform that became
slower or costlier than it was while still inside its SLAs. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The class whose p95 is compared: the one most requests fall in. (Critical requests are as
# many in a smoke run, but their p95 is a few milliseconds, which this machine's noise moves by
# more than half from run to run: measured 2.5x to 4.5x the reference over three runs.)
COMPARED_CLASSES = ("read",)


@dataclass(frozen=True)
class Reference:
    """The reference service as k6 measured it in this run."""

    requests: int
    rps: float
    p50_ms: float
    p95_ms: float
    cpu_us_per_request: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": "Starlette JSON endpoint, uvicorn + uvloop + httptools, one process",
            "requests": self.requests,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "cpu_us_per_request": _rounded(self.cpu_us_per_request),
        }


@dataclass(frozen=True)
class Ratio:
    """A figure over its reference; ``baseline`` None when none is committed for it."""

    name: str
    value: float
    baseline: float | None
    tolerance: float

    @property
    def limit(self) -> float | None:
        return None if self.baseline is None else self.baseline * (1 + self.tolerance)

    @property
    def ok(self) -> bool:
        return self.limit is None or self.value <= self.limit

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": round(self.value, 3),
            "baseline": self.baseline,
            "tolerance": self.tolerance,
            "limit": _rounded(self.limit),
            "ok": self.ok,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def ratios(figures: Mapping[str, Any], reference: Reference) -> dict[str, float]:
    """The run's ratios to the reference: platform CPU per request over the reference's (when
    the platform's processes were measured) and p95 per compared class over the reference's
    p95."""
    out: dict[str, float] = {}
    cpu_s = figures.get("platform_cpu_s")
    requests = figures.get("requests")
    if cpu_s and requests and reference.cpu_us_per_request:
        out["cpu_per_request"] = cpu_s * 1e6 / requests / reference.cpu_us_per_request
    for cls in COMPARED_CLASSES:
        p95 = figures.get("latency_ms", {}).get(cls, {}).get("p95")
        if p95 is not None and reference.p95_ms > 0:
            out[f"latency.{cls}.p95"] = p95 / reference.p95_ms
    return {name: value for name, value in out.items() if math.isfinite(value)}


@dataclass(frozen=True)
class GateResult:
    ratios: tuple[Ratio, ...]
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failures


def compare(
    measured: Mapping[str, float], baseline: Mapping[str, float] | None, tolerance: float
) -> GateResult:
    """Each measured ratio against its baseline; a ratio over ``baseline * (1 + tolerance)``
    fails, and so does a missing baseline (the gate would otherwise pass by default)."""
    rows = tuple(
        Ratio(name, value, None if baseline is None else baseline.get(name), tolerance)
        for name, value in sorted(measured.items())
    )
    failures = [
        f"regression: {row.name} is {row.value:.2f}x the reference, over the baseline "
        f"{row.baseline:.2f}x + {tolerance:.0%} = {row.limit:.2f}x"
        for row in rows
        if row.baseline is not None and row.limit is not None and not row.ok
    ]
    if baseline is None:
        failures.append("no baseline for this profile: record one with make loadtest-baseline")
    else:
        failures += [
            f"regression: {name} was not measured, but the baseline has it"
            for name in sorted(set(baseline) - set(measured))
        ]
    return GateResult(rows, tuple(failures))
