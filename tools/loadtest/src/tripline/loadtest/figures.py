"""A run's figures, from k6's summary (the clients' side) and the platform samples (the
servers' side): what the report shows and the gate divides. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tripline.loadtest.plan import OUTCOMES, PRIORITIES, STATUSES, STEPS, VERDICTS
from tripline.loadtest.routes import MEASURED_CLASSES, STORAGE

# Processes that load the platform rather than serve it.
LOADERS = frozenset({"k6", "reference"})


def _values(metrics: Mapping[str, Any], name: str) -> Mapping[str, float]:
    entry = metrics.get(name)
    return entry.get("values", {}) if isinstance(entry, Mapping) else {}


def _count(metrics: Mapping[str, Any], name: str) -> int:
    return int(_values(metrics, name).get("count", 0))


def trend(values: Mapping[str, float]) -> dict[str, float] | None:
    """A k6 trend as ``{count, p50, p95, p99, max}`` (None when it has no samples)."""
    if not values:
        return None
    return {
        "count": int(values.get("count", 0)),
        "p50": round(values.get("med", 0.0), 3),
        "p95": round(values.get("p(95)", 0.0), 3),
        "p99": round(values.get("p(99)", 0.0), 3),
        "max": round(values.get("max", 0.0), 3),
    }


def processes(samples: Sequence[Mapping[str, Any]], duration_s: float) -> dict[str, Any]:
    """Per process: CPU seconds over the samples, as a share of one core, and the most memory
    it held."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    rss_max: dict[str, int] = {}
    for sample in samples:
        for name, usage in (sample.get("processes") or {}).items():
            first.setdefault(name, usage["cpu_s"])
            last[name] = usage["cpu_s"]
            rss_max[name] = max(rss_max.get(name, 0), int(usage["rss_bytes"]))
    return {
        name: {
            "cpu_s": round(last[name] - first[name], 3),
            "cpu_share": round((last[name] - first[name]) / duration_s, 3) if duration_s else None,
            "rss_max_bytes": rss_max[name],
        }
        for name in sorted(first)
    }


def compute(
    k6_summary: Mapping[str, Any], samples: Sequence[Mapping[str, Any]], duration_s: float
) -> dict[str, Any]:
    """Every figure of a run (see the report for their meaning)."""
    metrics = k6_summary.get("metrics", {})
    by_priority: dict[str, dict[str, int]] = {}
    for priority in PRIORITIES:
        outcomes = {
            outcome: _count(metrics, f"tl_responses{{priority:{priority},outcome:{outcome}}}")
            for outcome in OUTCOMES
        }
        if any(outcomes.values()):
            by_priority[priority] = {
                "requests": sum(outcomes.values()),
                "429": outcomes["limited"],
                "503": outcomes["shed"],
                "409": outcomes["conflict"],
                "errors": outcomes["error"],
            }
    requests = sum(p["requests"] for name, p in by_priority.items() if name != STORAGE)
    errors = _values(metrics, "tl_errors")
    sos = _values(metrics, "tl_sos_ok")
    used = processes(samples, duration_s)
    platform_cpu = sum(p["cpu_s"] for name, p in used.items() if name not in LOADERS)
    busiest = max(
        (name for name in used if name not in LOADERS),
        key=lambda name: used[name]["cpu_s"],
        default=None,
    )
    return {
        "requests": requests,
        "rps": round(requests / duration_s, 2) if duration_s else None,
        "errors": int(errors.get("passes", 0)),
        "error_rate": errors.get("rate"),
        "latency_ms": {
            cls: t
            for cls in MEASURED_CLASSES
            if (t := trend(_values(metrics, f"http_req_duration{{class:{cls}}}")))
        },
        "status_counts": {
            str(status): n
            for status in STATUSES
            if (n := _count(metrics, f"tl_status{{status:{status}}}"))
        },
        "by_priority": by_priority,
        "sos": {
            "sent": int(sos.get("passes", 0) + sos.get("fails", 0)),
            "accepted": int(sos.get("passes", 0)),
        },
        "trips": {step: _count(metrics, f"tl_trips{{step:{step}}}") for step in STEPS["tl_trips"]},
        "tracking": {
            "subscribers": _count(metrics, "tl_subscribed"),
            "published": _count(metrics, "tl_published"),
            "delivered": _count(metrics, "tl_delivered"),
            "lost": _count(metrics, "tl_events_lost"),
            "reconnects": _count(metrics, "tl_reconnects"),
            "unrecovered": _count(metrics, "tl_unrecovered"),
            "latency_ms": trend(_values(metrics, "tl_delivery_ms")),
        },
        "uploads": {
            "started": _count(metrics, "tl_uploads{step:presigned}"),
            "completed": _count(metrics, "tl_uploads{step:completed}"),
            "verdicts": _count(metrics, "tl_uploads{step:verdict}"),
            **{v: _count(metrics, f"tl_uploads{{verdict:{v}}}") for v in VERDICTS},
            "timed_out": _count(metrics, "tl_uploads{step:timed_out}"),
            "time_to_verdict_ms": trend(_values(metrics, "tl_upload_verdict_ms")),
        },
        "processes": used,
        "platform_cpu_s": round(platform_cpu, 3),
        "capacity": {"saturated_first": busiest},
    }
